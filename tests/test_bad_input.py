"""At least 20 bad inputs across the three command lines: exit 2, one clear line, no traceback,
nothing written or deleted in an existing experiment. And two launches of one name at once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.cli import main as analysis_main
from analysis.load import REQUIRED
from sweep.cli import main as sweep_main
from trainables.cli import main as trainables_main

ROOT = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())
MAINS = {"sweep": sweep_main, "analysis": analysis_main, "trainables": trainables_main}


def _spec(tmp, **changes):
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump({**SMOKE, "storage": str(tmp / "res"), **changes}))
    return str(path)


def _half_written(tmp):
    """An experiment whose `run` died before Ray Tune wrote anything: only the spec copy."""
    d = tmp / "half"
    d.mkdir()
    (d / "sweep-spec.json").write_text(json.dumps({**SMOKE, "storage": str(tmp)}))
    return str(d)


def _launched(tmp):
    """An experiment launched from the smoke spec (its saved spec; Tune had not begun)."""
    exp = tmp / "res" / "smoke"
    exp.mkdir(parents=True)
    (exp / "sweep-spec.json").write_text(json.dumps({**SMOKE, "storage": str(tmp / "res")}))
    return True


def _parquet(tmp, frame):
    path = tmp / "x.parquet"
    frame.to_parquet(path)
    return str(path)


CASES = {
    # sweep run: spec files
    "run: wrong type": (
        lambda t: ["sweep", "run", _spec(t, datasets="fashion_mnist")],
        "must be a non-empty list",
    ),
    "run: unknown key": (lambda t: ["sweep", "run", _spec(t, colour=1)], "unknown key(s) ['colour']"),
    "run: negative width": (lambda t: ["sweep", "run", _spec(t, widths=[-4])], "widths=[-4]"),
    "run: seed not integer": (lambda t: ["sweep", "run", _spec(t, seeds=[0.5])], "seeds=[0.5]"),
    "run: more checkpoints evaluated than kept": (
        lambda t: ["sweep", "run", _spec(t, evaluate={"checkpoints": 3})],
        "evaluate.checkpoints=3 must be 1 to 2",
    ),
    "run: unknown dataset": (lambda t: ["sweep", "run", _spec(t, datasets=["svhn"])], "has ['svhn']"),
    "run: empty families": (lambda t: ["sweep", "run", _spec(t, families=[])], "families=[]"),
    "run: train value type": (
        lambda t: ["sweep", "run", _spec(t, train={**SMOKE["train"], "epochs": "ten"})],
        "epochs='ten'",
    ),
    "run: yaml syntax": (
        lambda t: (t / "s.yaml").write_text("name: [x") and ["sweep", "run", str(t / "s.yaml")],
        "not readable YAML",
    ),
    "run: no such spec": (lambda t: ["sweep", "run", str(t / "none.yaml")], "no such file"),
    "run: --set without a value": (
        lambda t: ["sweep", "run", _spec(t), "--set", "train.epochs"], "expected KEY=VALUE"
    ),
    "run: --set an unknown key": (
        lambda t: ["sweep", "run", _spec(t), "--set", "train.epoch=3"], "unknown setting(s) ['epoch']"
    ),
    "run: --set into a value": (
        lambda t: ["sweep", "run", _spec(t), "--set", "name.x=1"], "name is 'smoke', not a mapping of keys"
    ),
    "run: --resume-existing under another spec": (
        lambda t: ["sweep", "run", _spec(t, train={**SMOKE["train"], "epochs": 5}), "--resume-existing"]
        if _launched(t) else None,
        "experiment {tmp}/res/smoke exists with another spec (train differ)",
    ),
    "run: storage unwritable": (lambda t: ["sweep", "run", _spec(t, storage="/proc/x")], "not writable"),
    # sweep resume / status / export
    "resume: not an experiment": (lambda t: ["sweep", "resume", str(t)], "is not a sweep experiment"),
    "resume: spec copy corrupt": (
        lambda t: (t / "sweep-spec.json").write_text("{not json") and ["sweep", "resume", str(t)],
        "is not a sweep experiment",
    ),
    "resume: no such dir": (lambda t: ["sweep", "resume", str(t / "gone")], "is not a directory"),
    "status: not an experiment": (lambda t: ["sweep", "status", str(t)], "is not a sweep experiment"),
    "status: half-written": (
        lambda t: ["sweep", "status", _half_written(t)],
        "cannot read the experiment state",
    ),
    "status: a file": (
        lambda t: (t / "f").write_text("x") and ["sweep", "status", str(t / "f")],
        "not a directory",
    ),
    "export: not an experiment": (
        lambda t: ["sweep", "export", str(t), "-o", str(t / "o.parquet")],
        "is not a sweep experiment",
    ),
    "export: half-written": (
        lambda t: ["sweep", "export", _half_written(t), "-o", str(t / "o.parquet")],
        "cannot read the experiment state",
    ),
    "export: output is a directory": (lambda t: ["sweep", "export", str(t), "-o", str(t)], "is a directory"),
    "sweep: unknown command": (lambda t: ["sweep", "launch"], "invalid choice: 'launch'"),
    # analysis
    "analysis: empty parquet": (
        lambda t: [
            "analysis",
            "figures",
            _parquet(
                t,
                pd.DataFrame({c: pd.Series(dtype=float) for c in REQUIRED}),
            ),
            "-o",
            str(t / "o"),
        ],
        "holds no reported epochs",
    ),
    "analysis: foreign parquet": (
        lambda t: ["analysis", "figures", _parquet(t, pd.DataFrame({"x": [1]})), "-o", str(t / "o")],
        "lacks column(s)",
    ),
    "analysis: not an experiment": (
        lambda t: ["analysis", "figures", str(t), "-o", str(t / "o")],
        "is not a sweep experiment",
    ),
    "analysis: missing -o": (lambda t: ["analysis", "figures", str(t)], "-o/--output"),
    "analysis: bad epsilon": (
        lambda t: ["analysis", "figures", str(t), "-o", str(t / "o"), "--epsilon", "1,-2"],
        "epsilon '-2' is not a positive number of nats",
    ),
    # trainables
    "trainables: bad family": (
        lambda t: ["trainables", "run", "--family", "planar"], "family='planar' is not one of"
    ),
    "trainables: zero size": (
        lambda t: ["trainables", "run", "--family", "constant", "--n-train", "0"],
        "n_train=0",
    ),
}


def _snapshot(root: Path):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capsys, smoke_experiment):
    _, exp = smoke_experiment
    before = _snapshot(exp)
    make_args, words = CASES[case]
    args = make_args(tmp_path)
    assert MAINS[args[0]](args[1:]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"python -m {args[0]}: error:") and "Traceback" not in err
    assert words.format(tmp=tmp_path) in err, err
    assert _snapshot(exp) == before  # the existing experiment is untouched


def test_at_least_twenty_cases():
    assert len(CASES) >= 20


def test_a_traceback_never_reaches_the_user(tmp_path):
    """The same through a real process: stderr is one line."""
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "status", str(tmp_path)], capture_output=True, text=True
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


@pytest.mark.slow  # two real launches racing: about 20 s (`make test-all`, CI)
def test_two_launches_of_one_name_at_once(ray_address, fashion_available, tmp_path):
    spec = _spec(tmp_path, seeds=[0], widths=[2], families=["amortized"], test_inference=False)
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "sweep", "run", spec],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert str(tmp_path / "res" / "smoke") in refused and (
        "already exists" in refused or "just created" in refused
    )
    assert sweep_main(["status", str(tmp_path / "res" / "smoke")]) == 0
