"""Figures, gap table and report: known answers on a synthetic table, real files on smoke results."""

import itertools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.load import load_gaps, load_results, with_variant
from analysis.markdown import gap_markdown
from analysis.tables import gap_table

VARIANTS = [("amortized", 4), ("amortized", 16), ("factorized", None), ("constant", None)]
# final -ELBO per datapoint by (variant, seed), and the epoch each first got train MSE < threshold
FINAL = {
    ("amortized", 4): (110.0, 114.0),
    ("amortized", 16): (100.0, 102.0),
    ("factorized", None): (101.0, 99.0),
    ("constant", None): (150.0, 160.0),
}
REACH = {
    ("amortized", 4): (2, 2),
    ("amortized", 16): (1, 2),
    ("factorized", None): (None, None),
    ("constant", None): (3, None),
}


def synthetic(epochs=3, last_epoch=None):
    rows = []
    for i, ((fam, w), seed) in enumerate(itertools.product(VARIANTS, (0, 1))):
        for e in range(1, (last_epoch or {}).get((fam, w, seed), epochs) + 1):
            hit = REACH[(fam, w)][seed]
            final = FINAL[(fam, w)][seed]
            rows.append(
                {
                    "trial_id": f"t{i}",
                    "status": "TERMINATED",
                    "epoch": e,
                    "dataset": "fashion_mnist",
                    "family": fam,
                    "width": w,
                    "seed": seed,
                    "epochs": epochs,
                    "n_train": 1000,
                    "n_test": 100,
                    "batch_size": 100,
                    "sigma_x": 0.1,
                    "mse_threshold": 0.03,
                    "neg_elbo_per_datapoint": final + 10.0 * (epochs - e),
                    "neg_elbo": 1000 * final,
                    "train_mse": 0.05 if hit is None or e < hit else 0.02,
                    "test_mse": None if fam == "factorized" else 0.04,
                    "opt_seconds": 2.0 * e,
                    "epochs_to_threshold": hit if hit is not None and e >= hit else None,
                    "seconds_to_threshold": 2.0 * hit if hit is not None and e >= hit else None,
                    "infer_seconds": (3.0 if fam == "factorized" else 0.001) if e == epochs else None,
                }
            )
    t = pd.DataFrame(rows)
    t["width"] = t["width"].astype("Int64")
    return with_variant(t)


def test_gap_table_reproduces_known_values():
    g = gap_table(synthetic()).set_index("variant")
    assert list(g.index) == ["k=4", "k=16", "factorized", "constant"]
    # gap = ELBO(F) - ELBO(variant) = neg(variant) - neg(F), paired by seed: k=4: (9, 15)
    assert g.loc["k=4", "gap_nats_mean"] == 12.0
    assert g.loc["k=4", "gap_nats_se"] == pytest.approx(np.std([9.0, 15.0], ddof=1) / np.sqrt(2))
    assert g.loc["k=16", "gap_nats_mean"] == 1.0  # (-1, 3)
    assert g.loc["constant", "gap_nats_mean"] == 55.0  # (49, 61)
    assert g.loc["factorized", "gap_nats_mean"] == 0.0
    assert g.loc["k=16", "neg_elbo_pt_mean"] == 101.0
    assert g.loc["k=4", "epochs_to_threshold"] == 2.0 and g.loc["k=4", "reached"] == "2/2"
    assert g.loc["k=16", "epochs_to_threshold"] == 1.5 and g.loc["k=16", "seconds_to_threshold"] == 3.0
    assert g.loc["constant", "reached"] == "1/2" and g.loc["constant", "epochs_to_threshold"] == 3.0
    assert g.loc["factorized", "reached"] == "0/2" and np.isnan(g.loc["factorized", "epochs_to_threshold"])
    assert np.isnan(g.loc["k=4", "speedup_iterations"])  # F-VI never reached it: no ratio
    assert g.loc["factorized", "infer_seconds_mean"] == 3.0
    assert np.isnan(g.loc["factorized", "test_mse_mean"])
    md = gap_markdown(gap_table(synthetic()))
    fvi_line = next(ln for ln in md.splitlines() if "factorized" in ln)
    assert "never" in fvi_line
    assert "12.0 ± 3.0" in md  # SE: sd 4.24 of 9 and 15, over sqrt(2)


def test_the_gap_against_an_axis_is_a_column_per_value_with_its_se(tmp_path):
    """sigma_x as a grid axis, 0.1 and 0.3: at 0.3 every encoder's -ELBO is 20 nats higher, and the
    measured amortization gap is 10 * seed + 1 on training images (+ 100 at 0.3). Each cell of the
    table against sigma_x is the mean over the two seeds and its standard error over them; the
    report writes it, and the figure against the axis has a training-images panel."""
    from analysis.markdown import axis_markdown
    from analysis.report import write_report
    from analysis.tables import axis_table, seed_table

    low = synthetic()
    high = synthetic().assign(sigma_x=0.3, trial_id=lambda t: t.trial_id + "b")
    high["neg_elbo_per_datapoint"] += np.where(high.family == "amortized", 20.0, 0.0)
    table = pd.concat([low, high], ignore_index=True)
    gaps = with_variant(pd.DataFrame([
        {"dataset": "fashion_mnist", "sigma_x": sigma, "family": fam, "width": w, "seed": seed,
         "split": split, "approximation_gap": 5.0,
         "amortization_gap": 10.0 * seed + (split == "test") + 1.0 + 100.0 * (sigma == 0.3)}
        for sigma, (fam, w), seed, split in itertools.product((0.1, 0.3), VARIANTS, (0, 1), ("train", "test"))
    ]).astype({"width": "Int64"}))

    seeds = seed_table(table, gaps).set_index(["sigma_x", "variant", "seed"]).sort_index()
    assert list(seeds.loc[(0.1, "k=4"), "gap_vs_fvi"]) == [9.0, 15.0]
    assert seeds.loc[(0.3, "k=4", 0), "gap_vs_fvi"] == 29.0  # F-VI unchanged at 0.3, the encoder 20 worse
    assert seeds.loc[(0.3, "k=16", 1), "amort_gap_train"] == 111.0
    assert seeds.loc[(0.3, "k=16", 1), "amort_gap_test"] == 112.0

    at = axis_table(table, gaps, "sigma_x").set_index(["quantity", "variant", "sigma_x"])
    cell = at.loc[("gap_vs_fvi", "k=4", 0.3)]
    assert cell["mean"] == 32.0 and cell.seeds == 2
    assert cell.se == pytest.approx(np.std([29.0, 35.0], ddof=1) / np.sqrt(2))  # 3.0
    assert at.loc[("amort_gap_train", "k=16", 0.1), "mean"] == 6.0
    assert at.loc[("amort_gap_train", "k=16", 0.1), "se"] == pytest.approx(5.0)
    assert at.loc[("approx_gap_test", "constant", 0.3), "se"] == 0.0
    md = axis_markdown(axis_table(table, gaps, "sigma_x"), "sigma_x")
    assert "| variant    | sigma_x=0.1   | sigma_x=0.3   |" in md
    block = md.split("**ELBO(F-VI) - ELBO")[1].split("\n**")[0]
    assert re.search(r"\| k=4 +\| 12\.0 ± 3\.0 +\| 32\.0 ± 3\.0 +\|", block)
    assert "mean ± SE over 2 seeds" in block
    assert md.index("k=4") < md.index("k=16") < md.index("factorized") < md.index("constant")  # their order

    write_report(table, tmp_path / "out", gaps)
    assert "| k=16 " in (tmp_path / "out" / "gap_by_sigma_x_table.md").read_text()
    assert "The gap against sigma_x" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "fashion_mnist_gap_vs_sigma_x.png").exists()


def test_speedup_is_factorized_over_amortized():
    t = synthetic()
    t.loc[t.family == "factorized", "epochs_to_threshold"] = 3.0
    t.loc[t.family == "factorized", "seconds_to_threshold"] = 6.0
    g = gap_table(t).set_index("variant")
    assert g.loc["k=4", "speedup_iterations"] == 1.5 and g.loc["k=4", "speedup_seconds"] == 1.5


def test_half_finished_sweep_compares_at_the_common_epoch(tmp_path):
    t = synthetic(epochs=5, last_epoch={("factorized", None, 1): 3})
    g = gap_table(t).set_index("variant")
    assert (g["epoch"] == 3).all()
    assert g.loc["k=4", "neg_elbo_pt_mean"] == 112.0 + 20.0  # epoch 3 of 5: final + 10 * 2
    t.to_parquet(tmp_path / "t.parquet")
    assert main(["figures", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out")]) == 0
    assert "Partial results" in (tmp_path / "out" / "report.md").read_text()


FIGURES = ("neg_elbo", "train_mse", "test_mse", "seeds", "gap_vs_width", "compute", "gap_split", "refine")


def _valid_png(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(path)
    assert img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.01  # not a blank canvas


def test_figures_on_real_smoke_results(smoke_experiment, tmp_path, capsys):
    _, exp = smoke_experiment
    assert main(["figures", str(exp), "-o", str(tmp_path / "out"), "--formats", "png,pdf"]) == 0
    out = tmp_path / "out"
    for name in FIGURES:
        _valid_png(out / f"fashion_mnist_{name}.png")
        assert (out / f"fashion_mnist_{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert (out / "report.html").stat().st_size > 0
    report = (out / "report.md").read_text()
    assert all(f"fashion_mnist_{n}.png" in report for n in FIGURES)
    assert "Partial" not in report

    # the gap table's numbers equal the ones computed directly from the tidy table
    gaps = pd.read_csv(out / "gap_table.csv").set_index("variant")
    tidy = load_results(exp)
    last = tidy[tidy.epoch == 4]
    neg = last.pivot_table(index="seed", columns="variant", values="neg_elbo_per_datapoint")
    for variant in ("k=2", "k=8", "constant"):
        gap = neg[variant] - neg["factorized"]
        assert gaps.loc[variant, "gap_nats_mean"] == pytest.approx(gap.mean())
        assert gaps.loc[variant, "gap_nats_se"] == pytest.approx(gap.sem(ddof=1))
        assert gaps.loc[variant, "train_mse_mean"] == pytest.approx(
            last.loc[last.variant == variant, "train_mse"].mean()
        )
    assert gaps.loc["factorized", "neg_elbo_pt_mean"] == pytest.approx(neg["factorized"].mean())

    # the measured split (the smoke sweep's `evaluate`), from each trial's gap.json as written
    measured = [json.loads(p.read_text()) for p in exp.glob("*k8*/gap.json")]
    train = [r["train"]["amortization_gap"] for m in measured for r in m["results"]]
    assert len(train) == 2 and gaps.loc["k=8", "amort_gap_train"] == pytest.approx(np.mean(train))
    assert "approx. gap train" in (out / "gap_table.md").read_text()
    steps = pd.read_csv(out / "refine_table.csv")
    assert set(steps.steps) == {0, 1, 5, 20, 100} and set(steps.variant) == {"k=2", "k=8"}
    assert (steps[steps.steps == 0].gap_closed.abs() < 1e-6).all()  # K = 0 is the encoder's q itself
    assert "amort. gap closed" in (out / "refine_table.md").read_text()


def test_figures_read_the_experiment_once(smoke_experiment, tmp_path, monkeypatch):
    """`analysis figures EXP` reads each file of the experiment one time: the table and the gap split
    come from one reading (on a bucket, every read is a request)."""
    from collections import Counter

    from sweep import storage

    _, exp = smoke_experiment
    opened: Counter = Counter()
    resolve = storage.resolve

    class Counting:
        def __init__(self, fs):
            self.fs = fs

        def open_input_stream(self, path):
            opened[path] += 1
            return self.fs.open_input_stream(path)

        def __getattr__(self, name):
            return getattr(self.fs, name)

    def counted_resolve(location):
        fs, path = resolve(location)
        return Counting(fs), path

    monkeypatch.setattr(storage, "resolve", counted_resolve)  # every read of storage opens through it
    assert main(["figures", str(exp), "-o", str(tmp_path / "out")]) == 0
    results = [p for p in opened if p.endswith("/result.json")]
    gaps = [p for p in opened if p.endswith("/gap.json")]
    assert len(results) == len(gaps) == 8  # the smoke sweep's trials, each evaluated
    assert max(opened.values()) == 1, opened.most_common(3)


def test_reading_an_experiment_imports_no_torch(smoke_experiment):
    """The analysis reads an experiment (the table and the gap split) in a fresh interpreter
    without importing torch: the families' declarations are read, not their torch modules."""
    import subprocess
    import sys

    _, exp = smoke_experiment
    code = (f"import sys\nfrom analysis.load import load\nr = load({str(exp)!r})\n"
            "assert len(r.table) and r.measured is not None\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_compute_bars_are_the_median_seed_with_the_seeds_range():
    """The compute figure's bars: each variant's median over seeds, a line from its lowest seed to
    its highest, each seed's own value beside; a variant with none is left empty."""
    from matplotlib.figure import Figure

    from analysis.figures import _bars

    data = pd.DataFrame({"variant": ["a", "a", "a", "b", "b"], "y": [1.0, 5.0, 3.0, 10.0, 20.0]})
    ax = Figure().subplots()
    _bars(ax, data, "y", ["a", "b", "c"], {"a": (1, 0, 0), "b": (0, 1, 0), "c": (0, 0, 1)}, "median",
          points=True)
    heights = [p.get_height() for p in ax.patches]
    assert heights[:2] == [3.0, 15.0] and np.isnan(heights[2])
    ranges = [tuple(seg[:, 1]) for seg in ax.collections[0].get_segments()[:2]]
    assert ranges == [(1.0, 5.0), (10.0, 20.0)]
    x, y = ax.get_lines()[0].get_data()
    assert list(y) == [1.0, 5.0, 3.0, 10.0, 20.0]  # each seed, beside its own variant's bar
    assert list(np.round(x).astype(int)) == [0, 0, 0, 1, 1] and len(set(np.round(x, 6))) == 5


def test_parquet_input_gives_the_same_table(smoke_experiment, tmp_path):
    from sweep.cli import main as sweep_main

    _, exp = smoke_experiment
    sweep_main(["export", str(exp), "-o", str(tmp_path / "r.parquet")])
    from_dir = gap_table(load_results(exp), load_gaps(exp)[0])
    from_parquet = gap_table(load_results(tmp_path / "r.parquet"), load_gaps(tmp_path / "r.parquet")[0])
    assert from_dir["amort_gap_train"].notna().any()  # the measured split, from OUT.gaps.parquet too
    pd.testing.assert_frame_equal(from_dir, from_parquet, check_dtype=False)


@pytest.mark.parametrize("kind", ["not_experiment", "missing_columns", "not_parquet", "no_path", "empty"])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, kind):
    if kind == "not_experiment":
        target = tmp_path / "dir"
        target.mkdir()
        words = "is not a sweep experiment"
    elif kind == "missing_columns":
        target = tmp_path / "x.parquet"
        pd.DataFrame({"a": [1], "epoch": [1]}).to_parquet(target)
        words = "lacks column(s) ['trial_id'"
    elif kind == "not_parquet":
        target = tmp_path / "x.parquet"
        target.write_text("hello")
        words = "is not a readable parquet file"
    elif kind == "empty":
        target = tmp_path / "x.parquet"
        synthetic().iloc[:0].to_parquet(target)
        words = "holds no reported epochs"
    else:
        target = tmp_path / "nope"
        words = "no such file or directory"
    assert main(["figures", str(target), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_notebook_runs_top_to_bottom(smoke_experiment, tmp_path, monkeypatch):
    """Through a real Jupyter kernel on the smoke results: every figure drawn inline from the table
    (an image/png output in each cell tagged "figure"), none read from a file."""
    from pathlib import Path

    import nbformat
    from nbclient import NotebookClient

    _, exp = smoke_experiment
    path = Path(__file__).resolve().parents[1] / "analysis" / "notebooks" / "explore.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in code)  # stored clean
    assert not [c.source for c in code if re.search(r"\.png|\.pdf|Image\(|savefig|imread", c.source)]
    monkeypatch.setenv("AMORTIZATION_GAP_RESULTS", str(exp))
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert f"results: {exp}" in outputs[0].text  # the variable, not the newest demo
    figures = [c for c in code if "figure" in c.metadata.get("tags", [])]
    assert len(figures) >= 4  # -ELBO, gap against width, MSE, one trial
    for cell in figures:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), cell.source
    assert any("text/markdown" in o.get("data", {}) for o in outputs)  # the gap table
    assert list(tmp_path.iterdir()) == []  # nothing written beside it


def _demo_results(root):
    """results/ as `make demo` and `make readme-figures` leave it: two demos, a report, other files."""
    for name in ("quick-20260101-000000", "quick-20260102-000000", "quick-20260102-000000-report",
                 "readme-20260105-000000"):
        (root / name).mkdir(parents=True)
    (root / "quick-20260103-000000-timing.json").write_text("{}")
    return root / "quick-20260102-000000"


def test_newest_demo_is_the_latest_experiment_not_its_report(tmp_path, monkeypatch, capsys):
    from analysis.newest import RESULTS_ENV, main, newest_demo, notebook_results

    newest = _demo_results(tmp_path / "results")
    assert newest_demo(tmp_path / "results") == newest.resolve()
    assert main([str(tmp_path / "results")]) == 0
    assert capsys.readouterr().out == f"{newest.resolve()}\n"  # what `make notebook` opens
    monkeypatch.delenv(RESULTS_ENV, raising=False)  # run from analysis/notebooks/, as under Jupyter
    assert notebook_results(tmp_path / "analysis" / "notebooks") == str(newest.resolve())
    monkeypatch.setenv(RESULTS_ENV, "s3://bucket/exps/smoke")
    assert notebook_results(tmp_path) == "s3://bucket/exps/smoke"


def test_no_demo_results_is_one_line(tmp_path, monkeypatch):
    import subprocess
    import sys

    from analysis.newest import RESULTS_ENV, newest_demo, notebook_results

    (tmp_path / "results" / "quick-20260102-000000-report").mkdir(parents=True)  # a report alone
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="^no demo results under results/: run make demo first$"):
        newest_demo("results/")
    monkeypatch.delenv(RESULTS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=f"^no demo results under .*results/: run make demo first, "
                                                f"or set {RESULTS_ENV}$"):
        notebook_results(tmp_path)
    out = subprocess.run([sys.executable, "-m", "analysis.newest"], capture_output=True, text=True)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == "no demo results under results/: run make demo first\n"


@pytest.mark.skipif(not __import__("shutil").which("make"), reason="no make")
def test_make_notebook_opens_the_newest_demo(tmp_path):
    """The Makefile's `notebook` recipe with JupyterLab stood in for (a script printing its arguments
    and the variable), and the real one installed by the dev extra."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    lab = subprocess.run([Path(sys.executable).parent / "jupyter", "lab", "--version"], capture_output=True,
                         text=True)
    assert lab.returncode == 0 and lab.stdout.startswith("4."), lab.stderr
    newest = _demo_results(tmp_path / "results")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (bin_ / "jupyter").write_text('#!/bin/sh\necho "jupyter $* with $AMORTIZATION_GAP_RESULTS"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)

    def make(results):
        return subprocess.run(["make", "-s", "-o", "venv", "notebook", f"BIN={bin_}",
                               f"RESULTS_DIR={results}", "JUPYTER_ARGS=--no-browser --port 9"],
                              cwd=root, capture_output=True, text=True)

    out = make(tmp_path / "results")
    assert out.returncode == 0, out.stderr
    opened, lab = out.stdout.splitlines()
    assert opened == f"Opening analysis/notebooks/explore.ipynb on {newest.resolve()}"
    assert lab.startswith("jupyter lab analysis/notebooks/explore.ipynb ")
    assert lab.endswith(f" --no-browser --port 9 with {newest.resolve()}")
    (tmp_path / "empty").mkdir()
    out = make(tmp_path / "empty")
    assert out.returncode != 0 and out.stdout == ""
    assert out.stderr.splitlines()[0] == f"no demo results under {tmp_path / 'empty'}/: run make demo first"


def test_their_band_is_the_published_range_and_interpolates():
    from analysis.reference import load_reference, their_band

    ref = load_reference()
    assert set(ref.variant) == {"k=1", "k=64", "k=128", "k=256", "factorized", "constant"}
    assert their_band(ref, "factorized", 251) == (0.09181, 0.09348)  # a saved epoch: their row
    lo, hi = their_band(ref, "factorized", 246)  # halfway between 241 and 251
    assert lo == pytest.approx((0.09496 + 0.09181) / 2) and hi == pytest.approx((0.09800 + 0.09348) / 2)
    assert np.isnan(their_band(ref, "k=4", 500)[0])  # a width they did not run
    assert np.isnan(their_band(ref, "factorized", 6000)[0])  # past their 5,000 epochs


def _paper_scale(table):
    return table.assign(n_train=10_000, batch_size=1_000, mean_image_mse=0.0873, active_dims=5.0,
                        kl_z_per_datapoint=3.0)


def test_report_sets_a_paper_scale_run_beside_their_band(tmp_path):
    from analysis.reference import check_table, load_reference, their_band

    rows = []
    runs = (("k=64", "amortized", 64, 0.0730), ("factorized", "factorized", None, 0.2))
    for variant, fam, width, mse in runs:
        for seed in (0, 1):
            for e in (250, 500, 1000):
                rows.append({"trial_id": f"{variant}-{seed}", "status": "RUNNING", "epoch": e,
                             "dataset": "fashion_mnist", "family": fam, "width": width, "seed": seed,
                             "epochs": 5000, "n_test": 10_000, "sigma_x": 0.7071, "mse_threshold": 0.03,
                             "neg_elbo_per_datapoint": 600.0, "neg_elbo": 6e6, "train_mse": mse,
                             "test_mse": None if fam == "factorized" else mse, "opt_seconds": 1.0 * e,
                             "epochs_to_threshold": None, "seconds_to_threshold": None,
                             "infer_seconds": None})
    t = _paper_scale(with_variant(pd.DataFrame(rows).astype({"width": "Int64"})))
    check = check_table(t).set_index(["variant", "epoch"])
    ref = load_reference()
    lo, hi = their_band(ref, "k=64", 500)
    assert (check.loc[("k=64", 500), "their_min"], check.loc[("k=64", 500), "their_max"]) == (lo, hi)
    assert check.loc[("k=64", 500), "inside"]  # 0.0730 is inside their range
    assert not check.loc[("factorized", 1000), "inside"]  # 0.2 is far above 1.2 x their max
    assert list(check.loc["k=64"].index) == [250, 500, 1000]  # as far as the run went
    t.to_parquet(tmp_path / "t.parquet")
    assert main(["figures", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "Against Margossian & Blei's ten published runs" in report
    assert "| k=64 | 500 | 0.0730 |" in re.sub(" +", " ", report)
    _valid_png(tmp_path / "out" / "fashion_mnist_reference.png")
    small = synthetic()  # N = 1,000: not their scale, no comparison
    small.to_parquet(tmp_path / "s.parquet")
    assert main(["figures", str(tmp_path / "s.parquet"), "-o", str(tmp_path / "out2")]) == 0
    assert "Margossian" not in (tmp_path / "out2" / "report.md").read_text()


def test_collapse_is_flagged_in_plain_words():
    from trainables.metrics import latents_unused

    assert latents_unused(0.0875, 0.0873, 12) == "latents unused: MSE at the mean-image level 0.087"
    assert latents_unused(0.0873 * 1.031, 0.0873, 12) is None  # just outside 3%
    assert latents_unused(0.04, 0.0873, 0) == "latents unused: no active latent dimension"
    assert latents_unused(0.04, 0.0873, 9) is None and latents_unused(None, None, None) is None
    t = synthetic().assign(mean_image_mse=0.05, active_dims=3.0, kl_z_per_datapoint=1.0)
    t.loc[t.family == "constant", "active_dims"] = 0.0
    g = gap_table(t).set_index("variant")
    assert g.loc["constant", "note"] == "latents unused: no active latent dimension"
    # train MSE 0.02 (k=16 reached the threshold at once) is far below the floor 0.05: used
    assert g.loc["k=16", "note"] == ""
    assert "latents unused" in gap_markdown(gap_table(t))


def test_curves_are_the_mean_over_seeds_in_a_band_from_the_lowest_to_the_highest():
    import matplotlib.colors
    import matplotlib.pyplot as plt

    from analysis.figures import _mean_and_spread, palette

    t = synthetic()  # -ELBO per datapoint: final + 10 x (3 - epoch), per variant and seed
    fig, ax = plt.subplots()
    _mean_and_spread(ax, t, "neg_elbo_per_datapoint", palette(t))
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines) == ["k=4", "k=16", "factorized", "constant"]  # the palette's (variants') order
    assert list(lines["k=4"].get_xdata()) == [1, 2, 3]
    assert list(lines["k=4"].get_ydata()) == [132.0, 122.0, 112.0]  # seeds 0 and 1: 110 and 114 at the end
    band = ax.collections[0].get_paths()[0].vertices  # k=4's: at each epoch, its seeds' lowest and highest
    assert {x: sorted(set(band[band[:, 0] == x, 1])) for x in (1, 2, 3)} == {
        1: [130.0, 134.0], 2: [120.0, 124.0], 3: [110.0, 114.0]}
    colour = matplotlib.colors.to_rgb(lines["k=4"].get_color())
    assert np.allclose(ax.collections[0].get_facecolor()[0], (*colour, 0.2))  # its line's colour, faint
    assert len(ax.collections) == 4  # a band for every variant: each has two seeds
    plt.close(fig)


def test_a_figure_of_several_cells_has_one_legend_and_one_y_range_per_row(tmp_path, monkeypatch):
    """The seeds figure of two cells (lr=0.01 a hundred nats above lr=0.001): one legend, beside the
    first row's last panel, naming every variant; in each row every panel on the row's y range
    (that of plt.subplots(sharey="row"): its data's lowest to highest, 5% margins on the log
    scale), tick labels on the first panel only."""
    from analysis import figures
    from analysis.figures import cell_labels, seeds

    t = pd.concat([synthetic().assign(lr=0.001),
                   synthetic().assign(lr=0.01, trial_id=lambda d: d.trial_id + "-b",
                                      neg_elbo_per_datapoint=lambda d: d.neg_elbo_per_datapoint + 100)])
    t = with_variant(t.reset_index(drop=True))
    t = t.assign(cell=cell_labels(t, ["lr"]))
    saved = []
    real = figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, *a: saved.append(fig) or real(fig, *a))
    seeds(t, tmp_path, "seeds")
    axes = np.array(saved[0].axes).reshape(2, 2)  # a row per cell, a panel per seed
    legends = [(i, j) for i in range(2) for j in range(2) if axes[i, j].get_legend()]
    assert legends == [(0, 1)]
    named = [x.get_text() for x in axes[0, 1].get_legend().get_texts()]
    assert named == ["k=4", "k=16", "factorized", "constant"]
    for row, shift in zip(axes, (0, 100), strict=True):
        # seed 0 and seed 1 each draw final + 10 x (3 - epoch): the row's lowest is 99 + shift (F-VI,
        # seed 1, epoch 3), its highest 180 + shift (constant, seed 1, epoch 1)
        low, high = np.log10(99 + shift), np.log10(180 + shift)
        margin = 0.05 * (high - low)
        for ax in row:
            assert ax.get_ylim() == pytest.approx((10 ** (low - margin), 10 ** (high + margin)))
        labelled = [any(lab.get_visible() for lab in ax.get_yticklabels(which="both")) for ax in row]
        assert labelled == [True, False]


def test_cell_labels_keep_each_axis_as_written():
    from analysis.figures import cell_labels

    numeric = pd.DataFrame({"n_train": [100, 200, 100], "sigma_x": [0.3, 0.5, 0.3]})  # no text column
    assert cell_labels(numeric, ["n_train", "sigma_x"]) == [
        "n_train=100, sigma_x=0.3", "n_train=200, sigma_x=0.5", "n_train=100, sigma_x=0.3"]
    with_text = numeric.assign(dataset="mnist")
    assert cell_labels(with_text, ["n_train"]) == ["n_train=100", "n_train=200", "n_train=100"]
    assert cell_labels(numeric, []) == ["", "", ""]


def test_many_cells_draw_the_first_ones_and_say_so(tmp_path):
    """Past MAX_CELLS cells (or MAX_SEEDS seeds) a per-cell figure draws the first ones, in the axes'
    order, and its title names what it left out; --all draws every one."""
    from analysis import figures
    from analysis.figures import MAX_CELLS, MAX_SEEDS, _first_cells, cell_labels, seeds, title
    from analysis.load import cells

    lrs = [round(1e-3 * (i + 1), 4) for i in range(MAX_CELLS + 2)]
    t = with_variant(pd.concat([synthetic().assign(lr=lr, trial_id=lambda d, i=i: d.trial_id + f"-{i}")
                                for i, lr in enumerate(reversed(lrs))], ignore_index=True))
    t = t.assign(cell=cell_labels(t, ["lr"]))
    shown, cut = _first_cells(t)
    assert cells(shown) == [f"lr={lr}" for lr in lrs[:MAX_CELLS]]  # the axis' order, not the table's
    assert "the first 12 of 14 cells; every one: python -m analysis figures --all" in title(shown, "x", cut)
    assert "cells" not in title(t, "x")
    one = t[t.lr == lrs[0]]
    assert _first_cells(one)[0] is one and _first_cells(one)[1] == ""  # one cell: nothing left out

    many = pd.concat([t[t.lr == lrs[0]].assign(seed=s, trial_id=lambda d, s=s: d.trial_id + f"-{s}")
                      for s in range(MAX_SEEDS + 3)], ignore_index=True)
    drawn = []
    real = figures._subplots
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(figures, "_subplots", lambda *a, **kw: drawn.append(a[:2]) or real(*a, **kw))
        seeds(many, tmp_path, "capped", MAX_SEEDS)  # as all_figures draws it by default
        seeds(many, tmp_path, "all", None)  # --all
    assert drawn == [(1, MAX_SEEDS), (1, MAX_SEEDS + 3)]  # one row of panels: 10 seeds, then all 13
    assert (tmp_path / "capped.png").exists() and (tmp_path / "all.png").exists()


@pytest.mark.parametrize("given, bad", [("svg", "svg"), ("png,jpeg", "jpeg"), ("", "nothing")])
def test_an_unknown_figure_format_is_one_line(given, bad, capsys):
    assert main(["figures", "x", "-o", "y", "--formats", given]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"{bad} is not one of png, pdf" in err and "--formats" in err


@pytest.mark.parametrize("every", ["0", "-5"])
def test_a_watch_interval_that_is_not_positive_is_one_line(every, tmp_path, capsys):
    """Refused before anything is read or written."""
    out = tmp_path / "out"
    assert main(["figures", str(tmp_path), "-o", str(out), "--watch", "--every", every]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--every {float(every)} must be a positive number" in err
    assert not out.exists()


def test_watch_rewrites_the_report_until_every_trial_has_ended(smoke_copy, tmp_path, monkeypatch, capsys):
    """`analysis figures --watch` of a running sweep writes the report of the epochs so far, then
    again as results arrive, and stops once every trial has ended."""
    import analysis.cli
    from sweep.experiment import experiment_states

    newest = Path(experiment_states(str(smoke_copy))[-1])
    finished = newest.read_text()
    state = json.loads(finished)
    trial = json.loads(state["trial_data"][0][0])
    trial["status"] = "RUNNING"
    state["trial_data"][0][0] = json.dumps(trial)
    newest.write_text(json.dumps(state))
    result = next(smoke_copy.glob(f"{trial['trial_id']}-*/result.json"))
    whole = result.read_text()
    result.write_text("".join(whole.splitlines(keepends=True)[:2]))  # two epochs reported so far
    out, seen = tmp_path / "out", []

    def sleep(seconds):  # between two rewrites: the report so far, then the trial finishes
        seen.append((out / "report.md").read_text())
        newest.write_text(finished)
        result.write_text(whole)

    monkeypatch.setattr(analysis.cli.time, "sleep", sleep)
    assert main(["figures", str(smoke_copy), "-o", str(out), "--watch", "--every", "1"]) == 0
    assert len(seen) == 1 and "Partial results" in seen[0]
    assert capsys.readouterr().out.count("in a browser:") == 2
    assert "Partial results" not in (out / "report.md").read_text() and (out / "report.html").exists()


def test_figures_drawn_side_by_side_are_those_drawn_one_by_one(smoke_experiment, tmp_path):
    """The figures drawn in forked workers are the files one process draws, byte for byte."""
    from analysis.figures import all_figures
    from analysis.load import load

    _, exp = smoke_experiment
    results = load(exp)
    one = all_figures(results.table, tmp_path / "one", results.measured, results.refine, workers=1)
    two = all_figures(results.table, tmp_path / "two", results.measured, results.refine, workers=2)
    assert {ds: list(f) for ds, f in one.items()} == {ds: list(f) for ds, f in two.items()}
    files = [p for figs in one.values() for paths in figs.values() for p in paths]
    assert len(files) >= 6
    for p in files:
        assert p.read_bytes() == (tmp_path / "two" / p.name).read_bytes(), p.name
