"""Test-time inference: q(z_n) for images the family was not fit on, with theta fixed.

theta is fixed at its q-mean. Families with a test-time q (amortized, constant) answer with one
forward pass; the factorized family has nothing to say about new images, so fresh per-datapoint
q of its form are optimized (Adam, from the prior) until the ELBO stops improving. That cost is
what the study's compute figure compares (docs/science.md, 'What each trial records').
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from .families.q import detached
from .terms import z_terms


@dataclass
class InferredQ:
    q: Any  # the q of the M images (the family's form, e.g. q.DiagonalGaussian)
    seconds: float  # forward pass or optimization, not the ELBO evaluation
    elbo_per_datapoint: float  # E_q log p(x_n | z_n, theta) - KL(q_n || p), mean over the M images
    steps: int  # optimization steps taken (0 for a forward pass)


def infer(
    decoder,
    family,
    x: torch.Tensor,
    sigma_x: float,
    generator: torch.Generator,
    lr: float = 1e-2,
    max_steps: int = 2000,
    window: int = 25,
    rtol: float = 1e-4,
    eval_samples: int = 8,
) -> InferredQ:
    """q for the images x (M, D) and what it cost; see ``optimize_local_q`` for the stopping rule."""
    theta = decoder.mean.detach()[None]  # (1, P)
    start = time.perf_counter()
    if family.has_test_time_q:
        with torch.no_grad():
            q = family.q(x, torch.arange(x.shape[0], device=x.device))
            if family.refines:  # SA-VAE answers with its refined q, as it trained
                eps = torch.randn(1, *q.point().shape, generator=generator, device=x.device)
                q = family.refine(q, x, decoder, theta, eps, sigma_x)
        steps = 0
    else:
        q, steps = optimize_local_q(
            decoder, theta, x, sigma_x, generator, lr, max_steps, window, rtol, q_type=family.q_type
        )
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    seconds = time.perf_counter() - start
    elbo = fixed_theta_elbo(decoder, theta, x, q, sigma_x, generator, eval_samples)
    return InferredQ(q, seconds, elbo, steps)


def optimize_local_q(
    decoder,
    theta: torch.Tensor,
    x: torch.Tensor,
    sigma_x: float,
    generator: torch.Generator,
    lr: float = 1e-2,
    max_steps: int = 2000,
    window: int = 25,
    rtol: float = 1e-4,
    init: Any = None,
    samples: int | None = None,
    decays: int = 2,
    q_type: type | None = None,
) -> tuple[Any, int]:
    """Maximize each datapoint's own ELBO over its own q's parameters (``q.local()``), from
    ``init`` (a q), or from the prior in the form ``q_type``; returns (q, steps).

    Stopping rule: Adam with ``samples`` Monte Carlo draws per step (by default the q form's
    ``fit_samples``: 1 for a diagonal Gaussian, 8 for a full covariance); every ``window`` steps the
    window's mean per-datapoint ELBO is compared with the best so far, and when it has not
    improved by ``rtol`` (relative) the learning rate drops tenfold (ReduceLROnPlateau); the run
    stops at the plateau after ``decays`` drops, or at ``max_steps``. The drops let the noisy
    gradient settle on the optimum instead of jittering around it. Adam is elementwise and the
    loss a sum over datapoints, so this full-batch run is every datapoint optimized on its own.
    """
    n, d = x.shape[0], decoder.shapes[0][1]
    if init is None:
        init = q_type.prior(n, d, x)
    samples = samples or type(init).fit_samples
    params = {k: v.detach().clone().requires_grad_(True) for k, v in init.local().items()}
    make = type(init).from_local
    opt = torch.optim.Adam(list(params.values()), lr=lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="max", factor=0.1, patience=0, threshold=rtol, threshold_mode="rel"
    )
    acc, step = torch.zeros((), device=x.device, dtype=x.dtype), 0
    while step < max_steps:
        eps = torch.randn(samples, n, d, generator=generator, device=x.device, dtype=x.dtype)
        loglik, kl = z_terms(decoder, theta.expand(samples, -1), x, make(**params), eps, sigma_x)
        loss = (kl - loglik).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        acc += loss.detach()
        step += 1
        if step % window == 0:
            plateau.step(-acc.item() / (window * n))  # the window's mean per-datapoint ELBO
            acc.zero_()
            if opt.param_groups[0]["lr"] < lr * 0.1**decays * 0.5:  # a plateau after the last drop
                break
    return detached(make(**params)), step


@torch.no_grad()
def per_point_elbo(decoder, theta, x, q, sigma_x: float, eps: torch.Tensor) -> torch.Tensor:
    """E_q log p(x_n | z, theta) - KL(q_n || N(0, I)) per image, (n,); theta (1, P) fixed, eps (S, n, d)."""
    loglik, kl = z_terms(decoder, theta.expand(eps.shape[0], -1), x, q, eps, sigma_x)
    return loglik - kl


def fixed_theta_elbo(
    decoder,
    theta: torch.Tensor,
    x: torch.Tensor,
    q,
    sigma_x: float,
    generator: torch.Generator,
    samples: int = 8,
) -> float:
    """Mean over images of the per-image ELBO with theta fixed, S fresh draws of z."""
    eps = torch.randn(samples, *q.point().shape, generator=generator, device=x.device)
    return per_point_elbo(decoder, theta, x, q, sigma_x, eps).mean().item()
