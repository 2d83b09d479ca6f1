"""Every family on real Fashion-MNIST at the small setting of docs/science.md, one table.

Reproduces the rows measured before any project code existed (N = 1,000, minibatch
100, 300 epochs, Adam 1e-3, d = 64, H = 256, one CPU thread, one seed):

    python benchmarks/families.py --sigma-x 0.3 --theta-init torch
    python benchmarks/families.py --sigma-x 1.0 --theta-init paper --epochs 300

and sets F-VI's variants side by side at the demo's settings (quick.yaml), e.g.

    python benchmarks/families.py --sigma-x 0.1 --runs factorized factorized:lr=0.01 \\
        factorized:optimizer=dense,latent_terms=all factorized:optimizer=dense,latent_terms=all,lr=0.003

A run is FAMILY[:WIDTH][:KEY=VALUE,...]: any TrialConfig setting, or the family's own option.
Prints final negative ELBO per datapoint, train and test MSE, KL(q(z)) per image, and seconds
(--json PATH: also into this file, with the settings, the machine and the command line).
With --grad-norms (runs with grad_clip set), also each run's training-gradient norm per datapoint
before clipping, over all its steps: the figure docs/studies.md quotes for the families study,

    python benchmarks/families.py --sigma-x 0.1 --epochs 200 --grad-norms \
        --runs sa_vae:64:lr=0.003,grad_clip=5,steps=3,step_size=0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables import Fit, SeedRun, TrialConfig, fit, load  # noqa: E402
from trainables.config import field_names  # noqa: E402

RUNS = ["constant", "amortized:1", "amortized:64", "amortized:256", "factorized"]


def parse_run(text: str) -> tuple[str, int | None, dict]:
    parts = text.split(":")
    family, width, settings = parts[0], None, {}
    for part in parts[1:]:
        if "=" not in part:
            width = int(part)
            continue
        for item in part.split(","):
            key, value = item.split("=", 1)
            settings[key] = yaml.safe_load(value)
    return family, width, settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--sigma-x", type=float, default=0.3)
    p.add_argument("--theta-init", default="torch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", nargs="+", default=RUNS, metavar="FAMILY[:WIDTH][:K=V,...]")
    p.add_argument("--grad-norms", action="store_true",
                   help="also print the gradient norm per datapoint before clipping (runs with grad_clip)")
    p.add_argument("--json", metavar="PATH", help="also write every figure to this file")
    args = p.parse_args()
    rows: list[dict] = []
    norms: list[float] = []
    if args.grad_norms:
        record(norms, args.n_train)
    torch.set_num_threads(args.threads)
    data = load("fashion_mnist", args.n_train, args.n_test)
    print(f"fashion_mnist N={args.n_train} B={args.batch_size} epochs={args.epochs} "
          f"sigma_x={args.sigma_x} theta_init={args.theta_init} threads={args.threads}")
    print(f"{'run':<58}{'-ELBO/pt':>10}{'train MSE':>11}{'test MSE':>10}{'KL/pt':>8}{'seconds':>9}")
    for text in args.runs:
        family, width, settings = parse_run(text)
        options = {k: v for k, v in settings.items() if k not in field_names()}
        cfg = TrialConfig(
            dataset="fashion_mnist", family=family, width=width, n_train=args.n_train,
            n_test=args.n_test, batch_size=args.batch_size, epochs=args.epochs,
            sigma_x=args.sigma_x, theta_init=args.theta_init, seed=args.seed,
            eval_every=args.epochs, family_options=options,
        )
        cfg = dataclasses.replace(cfg, **{k: v for k, v in settings.items() if k in field_names()})
        if args.grad_norms and cfg.grad_clip is None:
            raise SystemExit(f"families: error: --grad-norms: run {text!r} has no grad_clip; add one")
        start = time.perf_counter()
        norms.clear()
        [m] = list(Fit([SeedRun(cfg, data)]).train())[-1]
        seconds = time.perf_counter() - start
        test = "-" if m["test_mse"] is None else f"{m['test_mse']:.4f}"
        print(f"{text:<58}{m['neg_elbo_per_datapoint']:>10.1f}{m['train_mse']:>11.4f}{test:>10}"
              f"{m['kl_z_per_datapoint']:>8.1f}{seconds:>9.1f}", flush=True)
        rows.append({"run": text, "family": family, "width": width, "settings": settings,
                     "neg_elbo_per_datapoint": m["neg_elbo_per_datapoint"], "train_mse": m["train_mse"],
                     "test_mse": m["test_mse"], "kl_z_per_datapoint": m["kl_z_per_datapoint"],
                     "seconds": seconds})
        if args.grad_norms:
            q = torch.tensor(norms).quantile(torch.tensor([0.1, 0.5, 0.9])).tolist()
            rows[-1]["grad_norm_quantiles"] = {"steps": len(norms), "q10": q[0], "median": q[1], "q90": q[2],
                                               "clip": cfg.grad_clip}
            print(f"  gradient norm per datapoint before clipping, {len(norms)} steps: 10% {q[0]:.1f}, "
                  f"median {q[1]:.1f}, 90% {q[2]:.1f}; clipped to {cfg.grad_clip}", flush=True)
    if args.json:
        from record import write

        write(args.json, {"dataset": "fashion_mnist", "n_train": args.n_train, "n_test": args.n_test,
                          "batch_size": args.batch_size, "epochs": args.epochs, "sigma_x": args.sigma_x,
                          "theta_init": args.theta_init, "seed": args.seed, "runs": rows}, args.threads)


def record(norms: list[float], n_train: int) -> None:
    """Wrap the engine's clipping so each step's norm (per datapoint: the objective is a sum over
    N) is appended to ``norms`` before it is clipped."""
    clip = fit.clip_gradients

    def recording(params, max_norm, per_seed=None):
        grads = [p.grad for p in params if p.grad is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads)) / n_train)
        return clip(params, max_norm, per_seed)

    fit.clip_gradients = recording


if __name__ == "__main__":
    main()
