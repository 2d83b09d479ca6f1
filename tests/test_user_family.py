"""A researcher's own family, in a module outside the project, through every command: the one-trial
CLI, a real sweep on Ray (its workers import it), status, export, evaluate and the analysis. The
sweep is the shared axes experiment (tests/conftest.py: AXES_SPEC, USER_FAMILY)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from sweep.cli import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]


def test_the_one_trial_command_imports_the_users_module(axes_experiment, tmp_path):
    module = axes_experiment[1]
    assert ROOT not in module.parents
    out = subprocess.run(
        [sys.executable, "-m", "trainables", "run", "--family-module", str(module), "--family", "one_layer",
         "--width", "4", "--epochs", "2", "--n-train", "200", "--n-test", "50", "--batch-size", "100",
         "--json", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(r)["event"] for r in out.stdout.splitlines()][-2:] == ["test_inference", "done"]


def test_a_family_in_the_users_own_file_goes_everywhere(axes_experiment, axes_report, tmp_path, capsys):
    exp = axes_experiment[0]
    capsys.readouterr()
    assert sweep_main(["status", str(exp)]) == 0
    status = capsys.readouterr().out
    assert len(re.findall(r"one_layer .* TERMINATED", status)) == 4  # one per cell of the two axes

    assert sweep_main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "r.parquet")
    mine = table[table.family == "one_layer"]
    assert set(mine.variant) == {"one-layer k=2"} and len(mine) == 4 * 2  # 4 cells, two epochs each
    assert mine.test_mse.notna().all()  # it answers for test images, as its class says
    gaps = pd.read_parquet(tmp_path / "r.gaps.parquet")
    assert (gaps.family == "one_layer").sum() == 4 * 2  # evaluated: train and test of each

    gap_table = (axes_report / "gap_table.md").read_text()
    assert "one-layer k=2" in gap_table
    refine = (axes_report / "refine_table.md").read_text()
    assert "one-layer k=2" in refine  # refinable: its q refined at evaluation time
    from analysis.figures import palette
    from analysis.load import load_results

    order = list(palette(load_results(exp)))
    assert order == ["k=2", "one-layer k=2", "factorized"]  # its declared order, its own colour
    assert (axes_report / "fashion_mnist_gap_vs_width.png").exists()
    # no project file was edited for it: none but the tests' own names it, none was copied in
    named = subprocess.run(["git", "grep", "-l", "--untracked", "-e", "OneLayer", "-e", "one_layer", "--",
                            ":!tests"], cwd=ROOT, capture_output=True, text=True)
    assert named.returncode == 1 and named.stdout == "", named.stdout  # 1: no match
    new = subprocess.run(["git", "ls-files", "--others", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True).stdout
    assert "my_family.py" not in new
