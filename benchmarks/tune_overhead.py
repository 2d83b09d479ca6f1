"""What Ray Tune costs a trial: the same trial by `python -m trainables run` and by `sweep run`.

    python benchmarks/tune_overhead.py                  # 300 epochs at paper size, ~2 x 1 minute
    python benchmarks/tune_overhead.py --epochs 100 --family factorized

Paper sizes (N = 10,000, minibatch 1,000) and the paper spec's reporting and checkpoint periods
(report every 10 epochs, checkpoint every 250 and at the end); one CPU thread each. Prints both
wall times (data loading + training + checkpoints) and Tune's overhead in percent (--json PATH: also
into this file, with the machine and the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--family", default="amortized")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = p.parse_args()
    width = args.width if args.family == "amortized" else None
    train = {
        "n_train": 10_000,
        "n_test": 10_000,
        "epochs": args.epochs,
        "batch_size": 1000,
        "sigma_x": 0.7071,
        "theta_init": "paper",
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cli = [
        sys.executable,
        "-m",
        "trainables",
        "run",
        "--family",
        args.family,
        "--json",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--eval-every",
        "10",
        "--skip-inference",
    ]
    cli += [a for k, v in train.items() for a in (f"--{k.replace('_', '-')}", str(v))]
    cli += ["--width", str(width)] if width else []
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(cli, capture_output=True, text=True, env=env, check=True)
        done = [json.loads(x) for x in out.stdout.splitlines() if '"done"' in x][-1]
        spec = {
            "name": "overhead",
            "datasets": ["fashion_mnist"],
            "families": [args.family],
            "seeds": [0],
            "train": train,
            "report_every": 10,
            "checkpoint_every": 250,
            "resources": {"cpu": 1, "gpu": 0},
            "storage": f"{tmp}/results",
            "test_inference": False,
        }
        if width:
            spec["widths"] = [width]
        Path(tmp, "spec.yaml").write_text(yaml.safe_dump(spec))
        subprocess.run(
            [sys.executable, "-m", "sweep", "run", f"{tmp}/spec.yaml"],
            capture_output=True,
            env=env,
            check=True,
        )
        (result,) = Path(tmp, "results", "overhead").glob("*/result.json")
        last = json.loads(result.read_text().splitlines()[-1])
    cli_s, tune_s = done["wall_seconds"], last["time_total_s"]
    label = f"{args.family}" + (f" k={width}" if width else "")
    print(f"{label}, {args.epochs} epochs at N=10,000, report every 10, checkpoint every 250, 1 thread")
    print(f"python -m trainables run: {cli_s:8.1f} s")
    print(f"python -m sweep run:      {tune_s:8.1f} s  (Tune's time_total_s)")
    print(f"Tune overhead:            {100 * (tune_s - cli_s) / cli_s:+8.1f} %")
    if args.json:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from record import write

        write(args.json, {"label": label, "family": args.family, "width": width, "epochs": args.epochs,
                          "n_train": train["n_train"], "report_every": spec["report_every"],
                          "checkpoint_every": spec["checkpoint_every"], "cli_s": cli_s, "tune_s": tune_s,
                          "overhead_pct": 100 * (tune_s - cli_s) / cli_s}, 1)


if __name__ == "__main__":
    main()
