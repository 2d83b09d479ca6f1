"""Any setting is an axis: a real sweep over two axes, through run, status, export and analysis."""

import re

import pandas as pd
import pytest
import yaml

from analysis.cli import main as analysis_main
from analysis.load import cells, load_results, sweep_axes
from sweep.cli import main

SPEC = {
    "name": "axes", "datasets": ["fashion_mnist"], "families": ["amortized", "factorized"], "widths": [2],
    "seeds": [0], "grid": {"n_train": [100, 200], "sigma_x": [0.3, 0.5]},
    "train": {"n_test": 50, "epochs": 2, "batch_size": 50, "theta_init": "torch", "lr": 0.003},
    "report_every": 1, "checkpoint_every": 2, "test_inference": False,
    "evaluate": {"points": 10, "iwae_samples": 10, "eval_samples": 2, "refine_steps": [0]},
}


@pytest.fixture(scope="module")
def axes_experiment(ray_address, fashion_available, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("axes")
    (tmp / "s.yaml").write_text(yaml.safe_dump(SPEC))
    assert main(["run", str(tmp / "s.yaml"), "--storage", str(tmp / "res")]) == 0
    return tmp / "res" / "axes"


def test_two_axes_fan_out_to_their_product(axes_experiment, capsys):
    exp = axes_experiment
    dirs = sorted(d.name for d in exp.iterdir() if d.is_dir() and "fashion_mnist" in d.name)
    assert len(dirs) == 2 * 2 * 2  # variants x n_train x sigma_x (one seed)
    assert any(d.endswith("-fashion_mnist-amortized-k2-n_train100-sigma_x0.3-s0") for d in dirs)
    assert main(["status", str(exp)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert header[header.index("width") + 1 : header.index("width") + 3] == ["n_train", "sigma_x"]
    assert len(lines) == 1 + 8 + 1 and all("TERMINATED" in ln for ln in lines[1:-1])
    assert lines[-1] == "8 trials: 8 TERMINATED; epochs 16/16"


def test_export_carries_the_axes_and_the_analysis_splits_by_them(axes_experiment, tmp_path):
    exp = axes_experiment
    assert main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    t = pd.read_parquet(tmp_path / "r.parquet")
    assert t.groupby(["n_train", "sigma_x"]).trial_id.nunique().to_dict() == {
        (100, 0.3): 2, (100, 0.5): 2, (200, 0.3): 2, (200, 0.5): 2}
    table = load_results(exp)
    assert sweep_axes(table) == ["n_train", "sigma_x"]

    assert analysis_main(["figures", str(exp), "-o", str(tmp_path / "out")]) == 0
    out = tmp_path / "out"
    gaps = pd.read_csv(out / "gap_table.csv")
    # one block per axis combination, each with both variants, F-VI paired within its own block
    blocks = list(gaps.groupby(["n_train", "sigma_x"], sort=False))
    assert [k for k, _ in blocks] == [(100, 0.3), (100, 0.5), (200, 0.3), (200, 0.5)]
    for (n, sx), block in blocks:
        assert list(block.variant) == ["k=2", "factorized"]
        assert block.set_index("variant").loc["factorized", "gap_nats_mean"] == 0
        fin = table[(table.n_train == n) & (table.sigma_x == sx) & (table.epoch == 2)]
        neg = fin.pivot_table(index="seed", columns="variant", values="neg_elbo_per_datapoint")
        want = (neg["k=2"] - neg["factorized"]).mean()
        assert block.set_index("variant").loc["k=2", "gap_nats_mean"] == pytest.approx(want)
    md = (out / "gap_table.md").read_text()
    assert re.search(r"\| dataset +\| +n_train +\| +sigma_x +\| variant", md)
    # a panel row per cell, and the gap against each numeric axis, a line per width
    assert cells(table.assign(cell=[f"n_train={a}, sigma_x={b}" for a, b in zip(table.n_train, table.sigma_x,
                                                                                 strict=True)])) == [
        "n_train=100, sigma_x=0.3", "n_train=100, sigma_x=0.5", "n_train=200, sigma_x=0.3",
        "n_train=200, sigma_x=0.5"]
    for name in ("neg_elbo", "train_mse", "gap_vs_width", "gap_split", "gap_vs_n_train", "gap_vs_sigma_x"):
        assert (out / f"fashion_mnist_{name}.png").stat().st_size > 10_000, name
