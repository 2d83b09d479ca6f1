"""The benchmark scripts run, fail loudly, and write into their --json file every figure they print
(the docs quote those files, docs/bench/*.json, through scripts/sync_docs.py)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def recorded(path: Path, script: str, threads) -> dict:
    """A benchmark's --json file: its figures, the command line that wrote it and the machine."""
    doc = json.loads(path.read_text())
    assert doc["command"].startswith(f"python benchmarks/{script} ") and str(path) in doc["command"]
    assert doc["machine"]["cpu_cores"] >= 1 and doc["machine"]["torch"] == torch.__version__.split("+")[0]
    assert doc["machine"]["torch_threads"] == threads
    return doc


def test_step_benchmark_writes_the_figures_it_prints(tmp_path):
    """At its smallest (N = 1,000: one minibatch an epoch; one epoch; 2 seeds; the smoke spec's
    projection): every line of figures it prints is in its --json file."""
    out = run("benchmarks/step.py", "--epochs", "1", "--seeds", "2", "--threads", "1", "--n-train", "1000",
              "--specs", "smoke", "--json", str(tmp_path / "step.json")).stdout
    s = recorded(tmp_path / "step.json", "step.py", 1)
    for words in ("GFLOP/s", "k=256", "full-cov k=64", "SA-VAE k=64", "factorized", "of matmul",
                  "vectorized seeds"):
        assert words in out
    assert f"{s['matmul_gflops']:.1f} GFLOP/s" in out
    assert [(f["family"], f["width"]) for f in s["families"]] == [
        ("amortized", 1), ("amortized", 64), ("amortized", 256), ("fullcov", 64), ("flow", 64),
        ("sa_vae", 64), ("factorized", None), ("constant", None)]
    for f in s["families"]:
        assert (f"{f['label']:<16}{f['steps_per_s']:>9.1f}{f['s_per_epoch']:>9.3f}"
                f"{f['gflop_per_step']:>12.2f}{f['gflops']:>9.1f}{f['of_matmul']:>10.0%}") in out
    v = s["vectorized_seeds"]
    assert v["seeds"] == 2 and len(v["families"]) == 3
    for f in v["families"]:
        assert (f"{f['label']:<16}{f['separate_s_per_epoch']:>18.3f}{f['batched_s_per_epoch']:>17.3f}"
                f"{f['speedup']:>9.2f}x") in out
    (smoke,) = s["projections"]
    assert smoke["spec"] == "smoke" and smoke["trials"] == 8 and smoke["concurrent"] >= 1
    assert (f"smoke.yaml: 8 trials, {smoke['trial_hours']:.2f} trial-hours of optimization here; "
            f"{smoke['wall_hours']:.2f} h wall with {smoke['concurrent']} concurrent trials") in out
    refused = subprocess.run([sys.executable, "benchmarks/step.py", "--specs", "nosuch"], cwd=ROOT,
                             capture_output=True, text=True)
    assert refused.returncode == 2 and "--specs nosuch: not in sweep/specs/" in refused.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_fails_loudly_without_cuda():
    out = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PY": sys.executable, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode != 0
    assert "gpu_check: FAILED: torch sees no CUDA device" in out.stderr


def test_step_compare_refuses_an_unknown_revision():
    out = subprocess.run([sys.executable, "benchmarks/step_compare.py", "no-such-revision"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "step_compare: error: 'no-such-revision' is not a revision of this repository" in out.stderr


def test_step_compare_names_the_families_it_can_compare():
    out = subprocess.run([sys.executable, "benchmarks/step_compare.py", "HEAD", "--families", "amortized:64",
                          "planar"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "step_compare: error: --families planar: not among the two trees' shared list: amortized:1 " \
           "amortized:64" in out.stderr


@pytest.mark.slow  # a benchmark's own run: about 20 s (`make test-all`, CI)
def test_step_compare_writes_the_figures_it_prints(tmp_path):
    """This tree against HEAD, one family, one round of one epoch."""
    out = run("benchmarks/step_compare.py", "HEAD", "--rounds", "1", "--epochs", "1", "--threads", "1",
              "--families", "constant", "--json", str(tmp_path / "c.json")).stdout
    c = recorded(tmp_path / "c.json", "step_compare.py", 1)
    assert c["other_revision"] == "HEAD" and c["this"].startswith(c["other"]) and c["rounds"] == 1
    (row,) = c["families"]
    assert row["label"] == "constant" and len(row["pairs"]) == 1
    assert (f"| constant | {row['this_steps_per_s']:.1f} | {row['other_steps_per_s']:.1f} "
            f"| {row['ratio']:.3f} |") in out


def test_families_benchmark_writes_the_figures_it_prints(tmp_path, fashion_available):
    out = run("benchmarks/families.py", "--epochs", "1", "--n-train", "100", "--n-test", "100", "--runs",
              "constant", "amortized:2:lr=0.01", "--json", str(tmp_path / "f.json")).stdout
    f = recorded(tmp_path / "f.json", "families.py", 1)
    assert [(r["family"], r["width"], r["settings"]) for r in f["runs"]] == [
        ("constant", None, {}), ("amortized", 2, {"lr": 0.01})]
    for r in f["runs"]:
        test = "-" if r["test_mse"] is None else f"{r['test_mse']:.4f}"
        assert (f"{r['run']:<58}{r['neg_elbo_per_datapoint']:>10.1f}{r['train_mse']:>11.4f}{test:>10}"
                f"{r['kl_z_per_datapoint']:>8.1f}{r['seconds']:>9.1f}") in out


@pytest.mark.slow  # a benchmark's own run: about 20 s (`make test-all`, CI)
def test_scale_read_writes_the_figures_it_prints(tmp_path, smoke_experiment):
    """One trial of one epoch, the smallest table, and a sweep's own experiment directory (the
    smoke sweep's): figures, the notebook's first cells and the loading timed, as printed."""
    _, exp = smoke_experiment
    out = run("benchmarks/scale_read.py", "--sizes", "1x1", "--experiments", str(exp), "--repeat", "2",
              "--json", str(tmp_path / "r.json")).stdout
    synthetic, smoke = recorded(tmp_path / "r.json", "scale_read.py", None)["sizes"]
    for r in (synthetic, smoke):  # the median of the two runs, each kept
        assert len(r["figures_runs"]) == 2 and r["figures_s"] == sum(r["figures_runs"]) / 2
    assert [synthetic[k] for k in ("what", "trials", "epochs", "rows")] == ["1x1", 1, 1, 1]
    assert (smoke["what"], smoke["trials"]) == (Path(exp).name, 8) and smoke["figures"] >= 6
    for r in (synthetic, smoke):
        assert r["figures"] >= 1 and 0 < r["load_s"] < r["notebook_s"]
        assert (f"{r['what'][-28:]:>28} {r['trials']:>7} {r['rows']:>10,} {r['figures_s']:>10.1f} "
                f"{r['figures']:>6} {r['notebook_s']:>11.1f} {r['load_s']:>8.2f}") in out


@pytest.mark.slow  # a Ray cluster's start (the scenarios themselves: tests/test_faults.py)
def test_faults_benchmark_writes_its_table(tmp_path, fashion_available):
    """--json PATH: the table printed, and it, the rows and the settings in the file (one scenario
    on one cluster: full storage, refused before any trial); --json alone: JSON lines only."""
    out = run("benchmarks/faults.py", "--one-cluster", "--n-train", "200", "--epochs", "3",
              "--checkpoint-every", "1", "--only", "storage_full", "--json", str(tmp_path / "f.json")).stdout
    f = recorded(tmp_path / "f.json", "faults.py", None)
    assert f["table"] in out and f["table"].startswith("| fault injected | trials |")
    (row,) = f["rows"]
    assert row["scenario"] == "storage_full" and row["fault"] in f["table"]
    assert f["settings"]["epochs"] == 3 and f["settings"]["checkpoint_every"] == 1 and f["seconds"] > 0
    assert f["settings"]["trials"] == 4 and f["settings"]["driver_kill_trials"] == 6
    assert f["settings"]["chaos_trials"] == 3 and f["settings"]["chaos_checkpoint_every"] == [1, 2, 5]


@pytest.mark.slow  # a trial by the command line and by a sweep (a Ray of its own)
def test_tune_overhead_writes_the_figures_it_prints(tmp_path, fashion_available):
    out = run("benchmarks/tune_overhead.py", "--epochs", "1", "--family", "constant", "--json",
              str(tmp_path / "t.json")).stdout
    t = recorded(tmp_path / "t.json", "tune_overhead.py", 1)
    assert t["label"] == "constant" and t["epochs"] == 1 and t["cli_s"] > 0 and t["tune_s"] > 0
    assert f"python -m trainables run: {t['cli_s']:8.1f} s" in out
    assert f"python -m sweep run:      {t['tune_s']:8.1f} s" in out
    assert f"Tune overhead:            {t['overhead_pct']:+8.1f} %" in out


@pytest.mark.slow  # two sweeps and their figures: about two minutes
def test_scale_benchmark_at_its_smallest(ray_address, tmp_path):
    """benchmarks/scale.py: two real sweeps (10 and 20 tiny trials), each also read from a real S3
    server, and a small synthetic table for the read side."""
    out = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--trials", "10", "20", "--reads", "12x30", "--s3",
         "--address", ray_address, "--work", str(tmp_path / "w"), "--json", str(tmp_path / "s.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = recorded(tmp_path / "s.json", "scale.py", 1)
    assert [r["trials"] for r in got["sweeps"]] == [10, 20]
    assert "added_per_trial_s" not in got["sweeps"][0]
    assert got["sweeps"][1]["added_per_trial_s"] == pytest.approx((got["sweeps"][1]["wall_s"]
                                                                   - got["sweeps"][0]["wall_s"]) / 10)
    for r in got["sweeps"]:
        assert r["wall_s"] > 0 and r["driver_peak_mb"] > 50 and r["snapshot_kb"] > 0
        assert all(r[k] > 0 for k in ("status_s", "export_s", "figures_s", "notebook_load_s", "display_s"))
        # export reads each trial's result.json from the bucket; status of a finished sweep reads
        # the spec and Tune's snapshot, no trial's file
        assert r["s3_export_requests"]["GET"] >= r["trials"] > r["s3_status_requests"]["GET"]
        assert r["s3_export_requests"].get("PUT", 0) + r["s3_export_requests"].get("POST", 0) >= 1
    assert set(got["sweep_slopes"]) >= {"wall_s", "status_s", "export_s"}
    assert [(r["trials"], r["epochs"], r["rows"]) for r in got["reads"]] == [(12, 30, 360)]
    slopes = ", ".join(f"{k} {v:.2f}" for k, v in got["sweep_slopes"].items())
    assert f"log-log slope against trials: {slopes}" in out.stdout
    assert "on the bucket: status" in out.stdout
    ten = str(tmp_path / "w" / "results" / "scale-10")
    both = subprocess.run([sys.executable, "benchmarks/scale.py", "--readers", ten], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert both.returncode == 0, both.stderr
    assert both.stdout.startswith("10 trials: Ray Tune's ExperimentAnalysis")
    for bad, says in ((["--trials", "15"], "scale: error: --trials 15"),
                      (["--reads", "12by30"], "scale: error: size '12by30': TRIALSxEPOCHS")):
        refused = subprocess.run([sys.executable, "benchmarks/scale.py", *bad], cwd=ROOT, capture_output=True,
                                 text=True)
        assert refused.returncode == 1 and says in refused.stderr


def test_study_budget_projects_the_spec_from_what_it_measured(tmp_path, fashion_available):
    """benchmarks/study_budget.py on the smoke spec with an `evaluate`, one epoch a shape, one width
    measured for both: a row per cell, the unmeasured width costed as the measured one, and the
    projection the sum of the trials over the machine's slots, as printed."""
    import yaml

    spec = yaml.safe_load((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())
    spec |= {"families": ["amortized"], "evaluate": {"points": 10, "iwae_samples": 4, "eval_samples": 2,
                                                      "refine_steps": [], "checkpoints": 2}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    out = run("benchmarks/study_budget.py", str(tmp_path / "s.yaml"), "--epochs", "1", "--widths", "2",
              "--json", str(tmp_path / "b.json")).stdout
    b = recorded(tmp_path / "b.json", "study_budget.py", 1)
    assert [(c["width"], c.get("as_width")) for c in b["cells"]] == [(2, None), (8, 2)]
    first = b["cells"][0]
    assert first["evaluate_s"] > 0 and first["trial_s"] == pytest.approx(
        4 * first["epoch_s"] + 2 * first["evaluate_s"], abs=0.2)  # 4 epochs, 2 checkpoints evaluated
    total = sum(c["trial_s"] * c["seeds"] for c in b["cells"])
    assert b["projected_wall_minutes"] == pytest.approx(total / b["side_by_side"] / 60, abs=0.06)
    assert f"{b['trials']} trials of 4 epochs, {b['side_by_side']} side by side: " \
           f"{b['projected_wall_minutes']} minutes projected" in out
