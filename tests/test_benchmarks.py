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
