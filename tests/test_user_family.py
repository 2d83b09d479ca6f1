"""A researcher's own family, in a module outside the project, through every command: the one-trial
CLI, a real sweep on Ray (its workers import it), status, export, evaluate and the analysis."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

from analysis.cli import main as analysis_main
from sweep.cli import main as sweep_main

ROOT = Path(__file__).resolve().parents[1]
FAMILY = '''
"""One hidden layer instead of two: a family of the user's own, in one file."""
import torch
from torch import nn

from trainables.families import Family, register


@register
class OneLayer(Family):
    """q(z_n) = N(mu(x_n), diag exp(logvar(x_n))) from an encoder with one hidden layer of width k."""

    name, label, order = "one_layer", "one-layer", 50
    has_width, refinable = True, True

    def __init__(self, data_dim, width, latent_dim):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(data_dim, width), nn.Tanh())
        self.head = nn.Linear(width, 2 * latent_dim)

    @classmethod
    def from_config(cls, cfg, n_data, data_dim):
        return cls(data_dim, cfg.width, cfg.latent_dim)

    def forward(self, x, idx=None):
        return self.head(self.body(x)).chunk(2, dim=-1)
'''
TRAIN = {"n_train": 200, "n_test": 100, "epochs": 3, "batch_size": 100, "sigma_x": 0.3, "theta_init": "torch"}


def test_a_family_in_the_users_own_file_goes_everywhere(ray_address, fashion_available, tmp_path, capsys):
    module = tmp_path / "elsewhere" / "my_family.py"
    module.parent.mkdir()
    module.write_text(FAMILY)
    assert ROOT not in module.parents
    before = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout

    # the one-trial command line
    out = subprocess.run(
        [sys.executable, "-m", "trainables", "run", "--family-module", str(module), "--family", "one_layer",
         "--width", "4", "--epochs", "2", "--n-train", "200", "--n-test", "50", "--batch-size", "100",
         "--json", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert [json.loads(r)["event"] for r in out.stdout.splitlines()][-2:] == ["test_inference", "done"]

    # a real sweep: Ray's workers import the module from the spec
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "mine", "datasets": ["fashion_mnist"], "families": ["amortized", "one_layer", "factorized"],
        "family_modules": [str(module)], "widths": [2], "seeds": [0], "train": TRAIN,
        "report_every": 1, "checkpoint_every": 3, "test_inference": False,
        "evaluate": {"points": 20, "iwae_samples": 20, "eval_samples": 4, "refine_steps": [0, 2]},
    }))
    assert sweep_main(["run", str(spec), "--storage", str(tmp_path / "res")]) == 0
    exp = tmp_path / "res" / "mine"
    capsys.readouterr()
    assert sweep_main(["status", str(exp)]) == 0
    status = capsys.readouterr().out
    assert len(re.findall(r"one_layer .* TERMINATED", status)) == 1

    assert sweep_main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    table = pd.read_parquet(tmp_path / "r.parquet")
    mine = table[table.family == "one_layer"]
    assert set(mine.variant) == {"one-layer k=2"} and len(mine) == 3  # its three epochs
    assert mine.test_mse.notna().all()  # it answers for test images, as its class says
    gaps = pd.read_parquet(tmp_path / "r.gaps.parquet")
    assert (gaps.family == "one_layer").sum() == 2  # train and test

    assert analysis_main(["figures", str(exp), "-o", str(tmp_path / "report")]) == 0
    gap_table = (tmp_path / "report" / "gap_table.md").read_text()
    assert "one-layer k=2" in gap_table
    refine = (tmp_path / "report" / "refine_table.md").read_text()
    assert "one-layer k=2" in refine  # refinable: its q refined at evaluation time
    from analysis.figures import palette
    from analysis.load import load_results

    order = list(palette(load_results(exp)))
    assert order == ["k=2", "one-layer k=2", "factorized"]  # its declared order, its own colour
    assert (tmp_path / "report" / "fashion_mnist_gap_vs_width.png").exists()
    after = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == before  # no project file was edited for it
