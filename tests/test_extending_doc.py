"""docs/extending.md's "Adding a family" runs as the page shows it: its class saved under the name the
page gives, its one-trial command and its sweep (spec file and commands) run from that directory,
the sweep on the session's Ray with its epochs and its evaluation cut down (CUT)."""

import json
import math
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section, up to the next `## ` heading (outside code)."""
    lines, out, inside, fenced = text.splitlines(), [], False, False
    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"## \S", line):
            if inside:
                break
            inside = line[3:].strip() == heading
            continue
        if inside:
            out.append(line)
    return "\n".join(out)


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.S | re.M)


def commands(block: str) -> list[list[str]]:
    """A bash block's commands as words, continuations joined, comments dropped."""
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(words)
    return out


SECTION = section(PAGE.read_text(), "Adding a family")
CODE = fenced(SECTION, "python")
SPECS = fenced(SECTION, "yaml")
COMMANDS = [c for block in fenced(SECTION, "bash") for c in commands(block)]


# The sweep as shown but smaller: its epochs, and the gap split's images, draws and q* steps (the
# page's own sizes take minutes on two CPUs)
CUT = ["train.epochs=2", "evaluate.points=10", "evaluate.iwae_samples=10", "evaluate.qstar.max_steps=25",
       "evaluate.refine_steps=[0, 2]"]


def python(words: list[str]) -> list[str]:
    assert words[0] == "python", words
    return [sys.executable, *words[1:]]


def test_the_page_shows_a_family_and_how_to_run_it():
    assert len(CODE) == 1 and "@register" in CODE[0]
    assert len(SPECS) == 1
    assert [c[2:4] for c in COMMANDS] == [["trainables", "run"], ["sweep", "run"], ["sweep", "status"]]
    assert all(c[:2] == ["python", "-m"] for c in COMMANDS)


@pytest.fixture
def workdir(tmp_path):
    """The page's family saved under the name its command imports, in a directory of its own."""
    one_trial = next(c for c in COMMANDS if c[2:4] == ["trainables", "run"])
    module = one_trial[one_trial.index("--family-module") + 1]
    assert module.endswith(".py") and "/" not in module
    (tmp_path / module).write_text(CODE[0])
    return tmp_path


def _run(words: list[str], cwd: Path) -> subprocess.CompletedProcess:
    out = subprocess.run(python(words), cwd=cwd, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, f"{shlex.join(words)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out


def test_the_one_trial_command_runs_as_shown(workdir, fashion_available):
    words = next(c for c in COMMANDS if c[2:4] == ["trainables", "run"])
    family = words[words.index("--family") + 1]
    events = [json.loads(line) for line in _run(words, workdir).stdout.splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert events[-1]["event"] == "done" and epochs
    assert epochs[-1]["epoch"] == int(words[words.index("--epochs") + 1])
    assert math.isfinite(epochs[-1]["neg_elbo"])
    assert [e["family"] for e in events if e["event"] == "test_inference"] == [family]


@pytest.mark.slow  # a sweep of the user family on Ray: 40 s (its one-trial command runs in make test)
def test_the_sweep_runs_as_shown(workdir, ray_address, fashion_available, tmp_path, monkeypatch, capsys):
    import pandas as pd
    import yaml

    from sweep.cli import main as sweep_main
    from trainables import families

    spec = yaml.safe_load(SPECS[0])
    module = next(c for c in COMMANDS if c[2:4] == ["trainables", "run"])
    assert spec["family_modules"] == [module[module.index("--family-module") + 1]]
    mine = [f for f in spec["families"] if f not in families.FAMILIES]  # not imported in this process
    assert mine == [module[module.index("--family") + 1]]
    run = next(c for c in COMMANDS if c[2:4] == ["sweep", "run"])
    (workdir / run[4]).write_text(SPECS[0])  # the file the command names
    _run([*run, "--address", ray_address, *[w for s in CUT for w in ("--set", s)]], workdir)

    # the rest in this process (the same CLI as `python -m sweep`), from the same directory
    monkeypatch.chdir(workdir)
    status = next(c for c in COMMANDS if c[2:4] == ["sweep", "status"])
    capsys.readouterr()
    assert sweep_main(status[3:]) == 0
    shown = capsys.readouterr().out
    assert len(re.findall(rf"{mine[0]} .* TERMINATED", shown)) == 1, shown

    assert sweep_main(["export", status[4], "-o", str(tmp_path / "r.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "r.parquet")
    rows = table[table.family == mine[0]]
    assert len(rows) == 2 and rows.neg_elbo.map(math.isfinite).all()  # two epochs
    gaps = pd.read_parquet(tmp_path / "r.gaps.parquet")
    assert (gaps.family == mine[0]).sum() == 2  # evaluated at the end: its train and test split
