"""Any setting is an axis: a real sweep over two axes (tests/conftest.py::AXES_SPEC, with a family of
the user's own among its variants), through run, status, export and analysis."""

import math
import re

import pandas as pd
import pytest

from analysis.load import cells, load, load_results, sweep_axes
from sweep.cli import main

VARIANTS = ["k=2", "one-layer k=2", "factorized"]


def test_two_axes_fan_out_to_their_product(axes_experiment, capsys):
    exp = axes_experiment[0]
    dirs = sorted(d.name for d in exp.iterdir() if d.is_dir() and "fashion_mnist" in d.name)
    assert len(dirs) == 3 * 2 * 2  # variants x n_train x sigma_x (one seed)
    assert any(d.endswith("-fashion_mnist-amortized-k2-n_train100-sigma_x0.3-s0") for d in dirs)
    assert main(["status", str(exp)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    header = lines[0].split()
    assert header[header.index("width") + 1 : header.index("width") + 3] == ["n_train", "sigma_x"]
    assert len(lines) == 1 + 12 + 1 and all("TERMINATED" in ln for ln in lines[1:-1])
    assert lines[-1] == "12 trials: 12 TERMINATED; epochs 24/24"


def test_export_carries_the_axes_and_the_analysis_splits_by_them(axes_experiment, axes_report, tmp_path):
    exp, out = axes_experiment[0], axes_report
    assert main(["export", str(exp), "-o", str(tmp_path / "r.parquet")]) == 0
    t = pd.read_parquet(tmp_path / "r.parquet")
    assert t.groupby(["n_train", "sigma_x"]).trial_id.nunique().to_dict() == {
        (100, 0.3): 3, (100, 0.5): 3, (200, 0.3): 3, (200, 0.5): 3}
    table = load_results(exp)
    assert sweep_axes(table) == ["n_train", "sigma_x"]

    gaps = pd.read_csv(out / "gap_table.csv")
    # one block per axis combination, each with every variant, F-VI paired within its own block
    blocks = list(gaps.groupby(["n_train", "sigma_x"], sort=False))
    assert [k for k, _ in blocks] == [(100, 0.3), (100, 0.5), (200, 0.3), (200, 0.5)]
    for (n, sx), block in blocks:
        assert list(block.variant) == VARIANTS
        assert block.set_index("variant").loc["factorized", "gap_nats_mean"] == 0
        fin = table[(table.n_train == n) & (table.sigma_x == sx) & (table.epoch == 2)]
        neg = fin.pivot_table(index="seed", columns="variant", values="neg_elbo_per_datapoint")
        for variant in VARIANTS[:2]:
            want = (neg[variant] - neg["factorized"]).mean()
            assert block.set_index("variant").loc[variant, "gap_nats_mean"] == pytest.approx(want)
    md = (out / "gap_table.md").read_text()
    assert re.search(r"\| dataset +\| +n_train +\| +sigma_x +\| variant", md)
    # a panel row per cell, and the gap against each numeric axis, a line per width
    assert cells(table.assign(cell=[f"n_train={a}, sigma_x={b}" for a, b in zip(table.n_train, table.sigma_x,
                                                                                 strict=True)])) == [
        "n_train=100, sigma_x=0.3", "n_train=100, sigma_x=0.5", "n_train=200, sigma_x=0.3",
        "n_train=200, sigma_x=0.5"]
    for name in ("neg_elbo", "train_mse", "gap_vs_width", "gap_split", "gap_vs_n_train", "gap_vs_sigma_x"):
        assert (out / f"fashion_mnist_{name}.png").stat().st_size > 10_000, name


def test_the_closing_width_is_answered_per_cell_from_the_measured_gaps(axes_experiment, axes_report):
    exp, out = axes_experiment[0], axes_report
    measured = load(exp).measured
    closing = pd.read_csv(out / "closing_width.csv")
    nats = closing[closing.epsilon == "1 nat"]
    # a row per cell, encoder family and split; with one width, k = 2 closes it or nothing does
    assert len(nats) == 4 * 2 * 2 and set(nats.family) == {"amortized", "one_layer"}
    for r in nats.itertuples():
        gap = measured[(measured.n_train == r.n_train) & (measured.sigma_x == r.sigma_x)
                       & (measured.family == r.family) & (measured.split == r.split)].amortization_gap
        assert len(gap) == 1
        assert (r.closing == 2) if gap.iloc[0] < 1 else math.isnan(r.closing)
    report = (out / "report.md").read_text()
    assert "## How wide the encoder must be" in report and "(closing_width.md)" in report
    assert report.count("the amortization gap falls below 1 nat per image") == 4 * 2
    assert "the amortization gap falls below 1 nat per image" in (out / "report.html").read_text()
    for axis in ("n_train", "sigma_x"):
        assert (out / f"fashion_mnist_closing_width_vs_{axis}.png").stat().st_size > 10_000
