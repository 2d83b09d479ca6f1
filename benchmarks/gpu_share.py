"""Several trials per GPU: trials per hour at resources.gpu = 1, 0.5 and 0.25 (Ray Tune).

    python benchmarks/gpu_share.py                   # 8 amortized k=64 trials, 100 epochs each
    python benchmarks/gpu_share.py --trials 16 --epochs 200

Paper sizes (N = 10,000, minibatch 1,000) on real Fashion-MNIST.
Needs a GPU, and as many CPUs as concurrent trials.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=100)
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu_share.py: needs a CUDA device; torch sees none")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    card = torch.cuda.get_device_name()
    print(f"{card}: {args.trials} trials of amortized k=64, {args.epochs} epochs, N=10,000")
    print(f"{'gpu per trial':>14}{'wall s':>9}{'trials/hour':>13}")
    for fraction in (1, 0.5, 0.25):
        with tempfile.TemporaryDirectory() as tmp:
            spec = {
                "name": "share",
                "datasets": ["fashion_mnist"],
                "families": ["amortized"],
                "widths": [64],
                "seeds": list(range(args.trials)),
                "train": {"n_train": 10_000, "n_test": 10_000, "epochs": args.epochs, "batch_size": 1000},
                "report_every": 10,
                "checkpoint_every": args.epochs,
                "resources": {"cpu": 1, "gpu": fraction},
                "storage": f"{tmp}/results",
                "test_inference": False,
            }
            Path(tmp, "spec.yaml").write_text(yaml.safe_dump(spec))
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "sweep", "run", f"{tmp}/spec.yaml"],
                env=env,
                check=True,
                capture_output=True,
            )
            wall = time.perf_counter() - start
        print(f"{fraction:>14}{wall:>9.1f}{args.trials * 3600 / wall:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
