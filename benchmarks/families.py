"""Every family on real Fashion-MNIST at SPEC.md's small setting, one table.

Reproduces SPEC.md's "measured before any project code existed" rows (N = 1,000, minibatch
100, 300 epochs, Adam 1e-3, d = 64, H = 256, one CPU thread, one seed):

    python benchmarks/families.py --sigma-x 0.3 --theta-init torch
    python benchmarks/families.py --sigma-x 1.0 --theta-init paper --epochs 300

Prints final negative ELBO per datapoint, train and test MSE, and seconds, per family.
"""

from __future__ import annotations

import argparse
import time

import torch

from trainables import Trial, TrialConfig, load

RUNS = [("constant", None), ("amortized", 1), ("amortized", 64), ("amortized", 256),
        ("factorized", None)]


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
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load("fashion_mnist", args.n_train, args.n_test)
    print(f"fashion_mnist N={args.n_train} B={args.batch_size} epochs={args.epochs} "
          f"sigma_x={args.sigma_x} theta_init={args.theta_init} threads={args.threads}")
    print(f"{'family':<16}{'-ELBO/pt':>10}{'train MSE':>11}{'test MSE':>10}{'seconds':>9}")
    for family, width in RUNS:
        cfg = TrialConfig(
            dataset="fashion_mnist", family=family, width=width, n_train=args.n_train,
            n_test=args.n_test, batch_size=args.batch_size, epochs=args.epochs,
            sigma_x=args.sigma_x, theta_init=args.theta_init, seed=args.seed,
            eval_every=args.epochs,
        )
        start = time.perf_counter()
        m = list(Trial(cfg, data).train())[-1]
        name = f"{family} k={width}" if width else family
        test = "-" if m["test_mse"] is None else f"{m['test_mse']:.4f}"
        print(f"{name:<16}{m['neg_elbo_per_datapoint']:>10.1f}{m['train_mse']:>11.4f}"
              f"{test:>10}{time.perf_counter() - start:>9.1f}", flush=True)


if __name__ == "__main__":
    main()
