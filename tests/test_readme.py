"""The README tells the truth: its commands exist, its generated blocks match the code."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _commands():
    """Shell lines of the README's bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


COMMANDS = _commands()
MAKE_TARGETS = sorted({c.split()[1] for c in COMMANDS if c.startswith("make ")})
MODULES = sorted({(m, sub) for c in COMMANDS for m, sub in re.findall(r"python -m (\w+) (\w+)", c)})
SCRIPTS = sorted({s for c in COMMANDS for s in re.findall(r"python (\S+\.py)", c)})


def test_readme_has_the_two_commands():
    assert MAKE_TARGETS == ["demo", "test"]
    assert ("sweep", "run") in MODULES and ("analysis", "figures") in MODULES


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_targets_exist(target):
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, re.M)
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr


@pytest.mark.parametrize("module, sub", MODULES)
def test_cli_commands_answer_help(module, sub):
    out = subprocess.run(
        [sys.executable, "-m", module, sub, "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_answer_help(script):
    out = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_generated_blocks_are_in_step_with_the_code():
    """Adding a config key without regenerating the README fails here."""
    out = subprocess.run(
        [sys.executable, "scripts/sync_readme.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    import dataclasses

    from sweep.rules import TRAIN_KEYS
    from sweep.spec import SweepSpec

    for key in (f.name for f in dataclasses.fields(SweepSpec)):
        assert f"| `{key}` |" in README
    for key in TRAIN_KEYS:
        assert f"| `train.{key}` |" in README
    assert "| `family_options.factorized.optimizer` |" in README  # a family's own settings too


def test_readme_images_exist():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert len(images) >= 6
    for img in images:
        assert (ROOT / img).is_file(), img
