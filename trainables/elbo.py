"""The minibatch ELBO of docs/science.md, returned as named terms.

    ELBO ~= (N/|B|) sum_{n in B} [ E_q log p(x_n | z_n, theta) - KL(q_n(z_n) || N(0, I)) ]
            - KL(q(theta) || N(0, sigma_theta^2 I))

The likelihood is a Monte Carlo average over S reparameterized draws (Kingma & Welling,
arXiv 1312.6114), one theta per draw shared by the minibatch. Both KL terms are taken in
closed form where the family's q has one (Gaussian against Gaussian prior), which equals
E_q[log p - log q] with lower variance; otherwise by Monte Carlo from the same draws.
Log-densities keep their normalizing constants, so the numbers are true nats. With
``latent_terms="all"`` the latents' KL covers every row each step, exactly, instead of the
minibatch's scaled by N/|B| (still unbiased, as Margossian & Blei's code did it).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .families.q import DiagonalGaussian
from .terms import log_gaussian, squared_error

TERMS = ("elbo", "loglik", "kl_z", "kl_theta")


class Noise(NamedTuple):
    theta: torch.Tensor  # (S, P) standard normal
    z: torch.Tensor  # (S, R, d) standard normal: R = the minibatch's rows, or all N (``noise_rows``)
    refine: torch.Tensor | None = None  # (S, R, d), a family that refines q: its own draws, not z's


def noise_rows(
    latent_terms: str, objective: str, batch: int, n_total: int, closed_form_kl: bool = True
) -> int:
    """Rows of z noise a step draws: all N when every latent's prior and entropy are sampled (the
    paper objective, or a q without a closed-form KL, with latent_terms "all"; the minibatch's z
    are then rows idx of that draw), else the minibatch's."""
    sampled = objective == "paper" or not closed_form_kl
    return n_total if (latent_terms == "all" and sampled) else batch


def draw_noise(
    num_params: int, rows: int, latent_dim: int, samples: int, generator: torch.Generator,
    refine: bool = False,
) -> Noise:
    dev = generator.device
    return Noise(
        torch.randn(samples, num_params, generator=generator, device=dev),
        torch.randn(samples, rows, latent_dim, generator=generator, device=dev),
        torch.randn(samples, rows, latent_dim, generator=generator, device=dev) if refine else None,
    )


def elbo_terms(
    decoder,
    family,
    x: torch.Tensor,
    idx: torch.Tensor,
    n_total: int,
    sigma_x: float,
    noise: Noise,
    x_all: torch.Tensor | None = None,
    objective: str = "elbo",
) -> dict[str, torch.Tensor]:
    """Unbiased estimate of the full-data ELBO from minibatch x (B, D) with row indices idx (B,).

    x_all (N, D), the whole training set: the latents' KL covers all N rows (latent_terms "all").
    objective "paper" adds the term "objective", Margossian & Blei's code's estimate, for the
    optimizer to maximize; the four TERMS stay the true ELBO's, so every mode reports nats.
    """
    scale = n_total / x.shape[0]
    if x_all is None:
        q = q_rows = family.q(x, idx)  # the minibatch's q_n, and the rows of the latents' KL
        rows_scale = scale
    else:
        q_rows = family.q(x_all, torch.arange(n_total, device=x.device))  # all N rows
        q, rows_scale = q_rows[idx], 1.0
    # every row's prior and entropy sampled: the noise covers all N rows, the minibatch's are rows idx
    rows_noise = x_all is not None and (objective == "paper" or not q_rows.closed_form_kl)
    eps_z = noise.z[:, idx] if rows_noise else noise.z  # (S, B, d)
    thetas = decoder.sample(noise.theta)  # (S, P)
    if getattr(family, "refines", False):  # SA-VAE: q refined on draws of its own, then scored on z's:
        # refined on the very draws that score it, q fits those draws and the objective rewards the
        # fit (benchmarks/qstar_draws.py shows a refined q scored on its own draw and on fresh ones)
        if noise.refine is None:
            raise ValueError(f"{family.name} refines q: its noise needs draws of its own (refine=True)")
        eps_r = noise.refine[:, idx] if rows_noise else noise.refine
        q = q_rows = family.refine(q, x, decoder, thetas, eps_r, sigma_x)
    z = q.sample(eps_z)  # (S, B, d)
    z_rows = q_rows.sample(noise.z) if rows_noise else z
    sq = squared_error(decoder, thetas, x, z)  # (B,)
    terms = {
        "loglik": scale * log_gaussian(sq, x.shape[-1], sigma_x).sum(),
        "kl_z": rows_scale * q_rows.kl(z_rows).sum(),
        "kl_theta": decoder.kl(),
    }
    terms["elbo"] = terms["loglik"] - terms["kl_z"] - terms["kl_theta"]
    if objective == "paper":
        if not isinstance(q_rows, DiagonalGaussian):
            raise ValueError("objective 'paper' is their code's, for diagonal Gaussian families only")
        terms["objective"] = (
            scale * (-sq / (2 * sigma_x**2)).sum()
            + rows_scale * _paper_log_ratio(q_rows.mean, 0.5 * q_rows.logvar, noise.z, 1.0)
            + _paper_log_ratio(decoder.mean, decoder.log_sd, noise.theta, decoder.sigma_theta)
        )
    elif objective != "elbo":
        raise ValueError(f"objective={objective!r} is not one of elbo, paper")
    return terms


def _paper_log_ratio(mean, log_sd, eps, prior_sd: float) -> torch.Tensor:
    """log p(v) - log q~(v) at v = mean + sd eps, summed, averaged over the S draws of eps (S, ...).

    Margossian & Blei's vae.ipynb: log p(v) = -v^2 / (2 prior_sd^2) (their theta prior
    -sum theta^2 is prior_sd 0.7071); their log q takes a variance but is called with the sd,
    log q~(v) = sum -0.5 log sd - (v - mean)^2 / (2 sd) = sum -0.5 log sd - sd eps^2 / 2, so the
    entropy's reward for spread is halved. Constants dropped, as theirs.
    """
    sd = log_sd.exp()
    v = mean + sd * eps
    per_draw = -v.square() / (2 * prior_sd**2) + 0.5 * log_sd + 0.5 * sd * eps.square()
    return per_draw.sum() / eps.shape[0]
