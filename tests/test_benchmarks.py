"""The benchmark scripts run (their figures are for people; here: they work and fail loudly)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_step_benchmark_prints_its_table():
    out = subprocess.run(
        [
            sys.executable,
            "benchmarks/step.py",
            "--epochs",
            "1",
            "--seeds",
            "2",
            "--no-projection",
            "--threads",
            "1",
            "--n-train",
            "2000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    for words in ("GFLOP/s", "k=256", "full-cov k=64", "SA-VAE k=64", "factorized", "of matmul",
                  "vectorized seeds"):
        assert words in out.stdout


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


@pytest.mark.slow  # two sweeps and their figures: about two minutes
def test_scale_benchmark_at_its_smallest(ray_address, tmp_path):
    """benchmarks/scale.py: two real sweeps (10 and 20 tiny trials), each also read from a real S3
    server, and a small synthetic table for the read side."""
    import json

    out = subprocess.run(
        [sys.executable, "benchmarks/scale.py", "--trials", "10", "20", "--reads", "12x30", "--s3",
         "--address", ray_address, "--work", str(tmp_path / "w"), "--json", str(tmp_path / "s.json")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    got = json.loads((tmp_path / "s.json").read_text())
    assert [r["trials"] for r in got["sweeps"]] == [10, 20]
    for r in got["sweeps"]:
        assert r["wall_s"] > 0 and r["driver_peak_mb"] > 50 and r["snapshot_kb"] > 0
        assert all(r[k] > 0 for k in ("status_s", "export_s", "figures_s", "notebook_load_s", "display_s"))
        # export reads each trial's result.json from the bucket; status of a finished sweep reads
        # the spec and Tune's snapshot, no trial's file
        assert r["s3_export_requests"]["GET"] >= r["trials"] > r["s3_status_requests"]["GET"]
        assert r["s3_export_requests"].get("PUT", 0) + r["s3_export_requests"].get("POST", 0) >= 1
    assert set(got["sweep_slopes"]) >= {"wall_s", "status_s", "export_s"}
    assert [(r["trials"], r["epochs"], r["rows"]) for r in got["reads"]] == [(12, 30, 360)]
    assert "log-log slope against trials" in out.stdout and "on the bucket: status" in out.stdout
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
