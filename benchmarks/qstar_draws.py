"""How many Monte Carlo draws a step the per-image fit of q needs, on trained models of a sweep.

    python benchmarks/qstar_draws.py results/families-STAMP --trials fullcov-k4-s0 amortized-k4-s0
    python benchmarks/qstar_draws.py results/families-STAMP --trials sa_vae-k16-s0 --draws 1 8

For each trial (a suffix of its directory name): the mean ELBO per image of its family's q on the
first --points training images (decoder at the q-mean of theta, 20 fresh draws), then of q* fitted
from it (inference.optimize_local_q) with each --draws, and the steps each took. A family that
refines q (SA-VAE) also shows its refined q scored on the draw it was refined on and on fresh ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep import storage  # noqa: E402
from sweep.trialrun import checkpointed_trials  # noqa: E402
from trainables import SeedRun  # noqa: E402
from trainables.inference import optimize_local_q, per_point_elbo  # noqa: E402


def load(exp: str, suffix: str) -> SeedRun:
    found = [n for n in storage.children(exp) if n.endswith(suffix)]
    if not found:
        raise SystemExit(f"qstar_draws: error: no trial directory in {exp} ends with {suffix!r}")
    trial = storage.join(exp, found[0])
    config = storage.read_json(storage.join(trial, "params.json"))
    return checkpointed_trials(*storage.resolve(trial), config, torch.device("cpu"))[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("experiment", help="experiment directory (a path or a URI such as s3://bucket/exp)")
    p.add_argument("--trials", nargs="+", required=True, help="suffixes of trial directory names")
    p.add_argument("--draws", nargs="+", type=int, default=[1, 8])
    p.add_argument("--points", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    for suffix in args.trials:
        trial = load(args.experiment, suffix)
        fam, dec, sigma = trial.family, trial.decoder, trial.cfg.sigma_x
        x = trial.x_train[: args.points]
        theta = dec.mean.detach()[None]
        gen = torch.Generator().manual_seed(0)
        eps = torch.randn(20, x.shape[0], trial.cfg.latent_dim, generator=gen)
        with torch.no_grad():
            q = fam.q(x, torch.arange(x.shape[0]))
        row = {"q": per_point_elbo(dec, theta, x, q, sigma, eps).mean().item()}
        if fam.refines:
            own = torch.randn(1, *eps.shape[1:], generator=gen)
            refined = fam.refine(q, x, dec, theta, own, sigma)
            row["refined, on its own draw"] = per_point_elbo(dec, theta, x, refined, sigma, own).mean().item()
            row["refined, fresh draws"] = per_point_elbo(dec, theta, x, refined, sigma, eps).mean().item()
        for draws in args.draws:
            fitted, steps = optimize_local_q(dec, theta, x, sigma, gen, init=q, samples=draws)
            elbo = per_point_elbo(dec, theta, x, fitted, sigma, eps).mean().item()
            row[f"q*, {draws} draws ({steps} steps)"] = elbo
        print(suffix + ": " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
