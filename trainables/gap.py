"""The gap measured, not guessed (Cremer, Li & Duvenaud 2018, arXiv 1801.03558).

For one trained model, with the decoder fixed at the q-mean of theta, each datapoint's gap
log p(x) - L[q] splits into

    approximation gap  log p(x) - L[q*]     (the limit of q's form: diagonal, full-cov)
    amortization gap   L[q*] - L[q]         (what the family's q leaves on the table)

q* is the datapoint's own Gaussian optimized to convergence from the family's q
(``inference.optimize_local_q``; its stopping rule is documented there), kept only where it
beats q under the same noise, so q* is never worse than q. log p(x) is the importance-weighted
bound (Burda, Grosse & Salakhutdinov 2016) with K draws from q*, chunked to bound memory.
Semi-amortized inference (Kim et al. 2018, arXiv 1802.02550): the encoder's q refined by K
gradient steps on each datapoint's own parameters, its ELBO and seconds as K grows.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .families.q import detached, standard_normal_log_prob, where
from .inference import optimize_local_q, per_point_elbo
from .terms import log_gaussian, z_terms

REFINE_STEPS = (0, 1, 5, 20, 100)


@torch.no_grad()
def iwae(
    decoder,
    theta,
    x,
    q,
    sigma_x: float,
    samples: int,
    generator: torch.Generator,
    chunk_samples: int = 128,
    chunk_points: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x_n) by importance sampling from q_n (a family's q, e.g. q*), K = ``samples``.

    Returns (estimate, its Monte Carlo standard error), each (n,); the error by the delta
    method, sqrt(Var(w) / K) / mean(w), from running log-sum-exps of w and w^2.
    """
    n, d = q.point().shape
    est, se = torch.empty(n, device=x.device), torch.empty(n, device=x.device)
    for a in range(0, n, chunk_points):
        xb, qb = x[a : a + chunk_points], q[a : a + chunk_points]
        nb = xb.shape[0]
        s1 = s2 = None  # log sum w, log sum w^2 over the draws so far, (nb,)
        for k in range(0, samples, chunk_samples):
            kk = min(chunk_samples, samples - k)
            z = qb.sample(torch.randn(kk, nb, d, generator=generator, device=x.device))  # (kk, nb, d)
            recon = decoder(z.reshape(-1, d), theta).view(kk, nb, -1)  # (kk, nb, D)
            log_w = (
                log_gaussian((xb - recon).square().sum(-1), x.shape[1], sigma_x)
                + standard_normal_log_prob(z)
                - qb.log_prob(z)
            )  # (kk, nb)
            b1, b2 = torch.logsumexp(log_w, 0), torch.logsumexp(2 * log_w, 0)
            s1 = b1 if s1 is None else torch.logaddexp(s1, b1)
            s2 = b2 if s2 is None else torch.logaddexp(s2, b2)
        est[a : a + chunk_points] = s1 - math.log(samples)
        rel_var = torch.expm1((s2 - math.log(samples)) - 2 * (s1 - math.log(samples))).clamp_min(0)
        se[a : a + chunk_points] = (rel_var / samples).sqrt()
    return est, se


def refine(
    decoder,
    theta,
    x,
    q,
    sigma_x: float,
    generator: torch.Generator,
    eps: torch.Tensor,
    steps: tuple[int, ...] = REFINE_STEPS,
    lr: float = 1e-2,
) -> list[dict[str, float]]:
    """Semi-amortized: Adam on each datapoint's own q parameters (``q.local()``) from the encoder's
    q, with the q form's ``fit_samples`` draws a step (as q*); the mean ELBO (under the fixed noise
    ``eps``) and the optimization seconds after each K."""
    params = {k: v.detach().clone().requires_grad_(True) for k, v in q.local().items()}
    make, draws = type(q).from_local, type(q).fit_samples
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    out, done, seconds = [], 0, 0.0
    for k in sorted(steps):
        start = time.perf_counter()
        for _ in range(k - done):
            noise = torch.randn(draws, *q.point().shape, generator=generator, device=x.device)
            loglik, kl = z_terms(decoder, theta.expand(draws, -1), x, make(**params), noise, sigma_x)
            opt.zero_grad(set_to_none=True)
            (kl - loglik).sum().backward()
            opt.step()
        seconds += time.perf_counter() - start
        done = k
        elbo = per_point_elbo(decoder, theta[None], x, detached(make(**params)), sigma_x, eps)
        out.append({"steps": k, "elbo": elbo.mean().item(), "seconds": seconds})
    return out


def _summary(v: torch.Tensor | None) -> tuple[float, float]:
    """(mean, standard error of the mean over the datapoints)."""
    if v is None:
        return float("nan"), float("nan")
    return v.mean().item(), (v.std() / math.sqrt(v.numel())).item() if v.numel() > 1 else 0.0


def gap_of_split(
    decoder,
    family,
    x,
    idx,
    sigma_x: float,
    generator: torch.Generator,
    iwae_samples: int = 5000,
    eval_samples: int = 100,
    refine_steps: tuple[int, ...] | None = None,
    qstar: dict[str, Any] | None = None,
    per_point: bool = False,
) -> dict[str, Any]:
    """The decomposition on images x (n, D); idx their training rows (None: unseen images).
    Means over the images with their standard errors; ``per_point`` adds the (n,) tensors."""
    theta = decoder.mean.detach()
    n, d = x.shape[0], decoder.shapes[0][1]
    with torch.no_grad():
        q = family.q(x, idx) if idx is not None or family.has_test_time_q else None  # F-VI: none for test
    eps = torch.randn(eval_samples, n, d, generator=generator, device=x.device)  # common random numbers
    if q is not None and family.refines:  # SA-VAE's q is its refined one, refined on draws of its own
        own = torch.randn(1, n, d, generator=generator, device=x.device)
        q = family.refine(q, x, decoder, theta[None], own, sigma_x)
    elbo_q = per_point_elbo(decoder, theta[None], x, q, sigma_x, eps) if q is not None else None
    start = time.perf_counter()
    q_star, steps = optimize_local_q(
        decoder, theta[None], x, sigma_x, generator, init=q, q_type=family.q_type, **(qstar or {})
    )
    seconds = time.perf_counter() - start
    elbo_star = per_point_elbo(decoder, theta[None], x, q_star, sigma_x, eps)
    if elbo_q is not None:  # keep q where the optimizer did not beat it: q* is never worse
        q_star = where(elbo_star < elbo_q, q, q_star)
        elbo_star = torch.maximum(elbo_star, elbo_q)
    log_px, log_px_se = iwae(decoder, theta, x, q_star, sigma_x, iwae_samples, generator)
    out: dict[str, Any] = {
        "n": n,
        "qstar_steps": steps,
        "qstar_seconds": seconds,
        "log_px_mc_se": (log_px_se.square().sum().sqrt() / n).item(),
    }
    for name, v in (
        ("elbo_q", elbo_q),
        ("elbo_qstar", elbo_star),
        ("log_px", log_px),
        ("amortization_gap", None if elbo_q is None else elbo_star - elbo_q),
        ("approximation_gap", log_px - elbo_star),
    ):
        out[name], out[f"{name}_se"] = _summary(v)
    if per_point:
        out["points"] = {"elbo_q": elbo_q, "elbo_qstar": elbo_star, "log_px": log_px, "log_px_se": log_px_se}
    if refine_steps and q is not None and family.has_test_time_q:
        out["refine"] = refine(decoder, theta, x, q, sigma_x, generator, eps, tuple(refine_steps))
    return out


def evaluate_trial(
    run,
    points: int = 1000,
    iwae_samples: int = 5000,
    eval_samples: int = 100,
    refine_steps: tuple[int, ...] | None = REFINE_STEPS,
    qstar: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Both splits of a trained ``fit.SeedRun``: the first ``points`` training and test images."""
    gen = torch.Generator(run.device).manual_seed(seed)
    n_train, n_test = min(points, run.x_train.shape[0]), min(points, run.x_test.shape[0])
    idx = torch.arange(n_train, device=run.device)
    common = dict(
        sigma_x=run.cfg.sigma_x,
        generator=gen,
        iwae_samples=iwae_samples,
        eval_samples=eval_samples,
        refine_steps=refine_steps if run.family.refinable else None,
        qstar=qstar,
    )
    return {
        "epoch": run.epoch,
        "train": gap_of_split(run.decoder, run.family, run.x_train[:n_train], idx, **common),
        "test": gap_of_split(run.decoder, run.family, run.x_test[:n_test], None, **common),
    }
