"""The minibatch ELBO of SPEC.md, returned as named terms.

    ELBO ~= (N/|B|) sum_{n in B} [ E_q log p(x_n | z_n, theta) - KL(q_n(z_n) || N(0, I)) ]
            - KL(q(theta) || N(0, sigma_theta^2 I))

The likelihood is a Monte Carlo average over S reparameterized draws (Kingma & Welling,
arXiv 1312.6114), one theta per draw shared by the minibatch. Both KL terms are taken in
closed form (Gaussian against Gaussian prior), which equals E_q[log p - log q] with lower
variance. Log-densities keep their normalizing constants, so the numbers are true nats.
With ``latent_terms="all"`` the latents' KL covers every row each step, exactly, instead of
the minibatch's scaled by N/|B| (still unbiased, as Margossian & Blei's code did it).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

TERMS = ("elbo", "loglik", "kl_z", "kl_theta")


class Noise(NamedTuple):
    theta: torch.Tensor  # (S, P) standard normal
    z: torch.Tensor  # (S, R, d) standard normal: R = the minibatch's rows, or all N (``noise_rows``)


def noise_rows(latent_terms: str, objective: str, batch: int, n_total: int) -> int:
    """Rows of z noise a step draws: all N when the paper objective samples every latent's
    prior and entropy (the minibatch's z are then rows idx of that draw), else the minibatch's."""
    return n_total if (latent_terms == "all" and objective == "paper") else batch


def draw_noise(
    num_params: int, rows: int, latent_dim: int, samples: int, generator: torch.Generator
) -> Noise:
    dev = generator.device
    return Noise(
        torch.randn(samples, num_params, generator=generator, device=dev),
        torch.randn(samples, rows, latent_dim, generator=generator, device=dev),
    )


def squared_error(decoder, thetas, x, mean, logvar, eps_z) -> torch.Tensor:
    """||x_n - Omega(z_n; theta)||^2 per datapoint, (B,), averaged over the S draws; z = mean + sd eps."""
    z = mean + (0.5 * logvar).exp() * eps_z  # (S, B, d)
    sq = 0.0
    for s in range(thetas.shape[0]):
        recon = decoder(z[s], thetas[s])  # (B, D)
        sq = sq + (x - recon).square().sum(-1)  # (B,)
    return sq / thetas.shape[0]


def z_terms(
    decoder,
    thetas: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    eps_z: torch.Tensor,
    sigma_x: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-datapoint E_q log p(x_n | z_n, theta) (MC over S) and KL(q_n || N(0, I)), each (B,)."""
    sq = squared_error(decoder, thetas, x, mean, logvar, eps_z)
    return log_gaussian(sq, x.shape[-1], sigma_x), gaussian_kl(mean, logvar)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag exp(logvar)) || N(0, I)) per row, (rows,): 0.5 sum(var - 1 - logvar + mean^2),
    written out since with latent_terms "all" it runs over all N rows every step; expm1 keeps
    its precision near the prior (var - 1 - logvar ~ logvar^2 / 2), where collapsed latents sit."""
    return 0.5 * (torch.expm1(logvar) - logvar + mean.square()).sum(-1)


def log_gaussian(sq: torch.Tensor, dim: int, sigma_x: float) -> torch.Tensor:
    """log N(x | recon, sigma_x^2 I) over ``dim`` pixels from sq = ||x - recon||^2; written out
    (not Normal.log_prob) so the (B, D) tensor is walked twice, not five times."""
    return -0.5 * dim * math.log(2 * math.pi * sigma_x**2) - sq / (2 * sigma_x**2)


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
        mean, logvar = family(x, idx)  # (B, d) each
        q_mean, q_logvar, q_scale = mean, logvar, scale  # the rows of the latents' KL
    else:
        q_mean, q_logvar = family(x_all, torch.arange(n_total, device=x.device))  # (N, d) each
        mean, logvar, q_scale = q_mean[idx], q_logvar[idx], 1.0
    all_rows_noise = noise.z.shape[1] == n_total and x_all is not None and objective == "paper"
    eps_z = noise.z[:, idx] if all_rows_noise else noise.z  # (S, B, d)
    thetas = decoder.sample(noise.theta)  # (S, P)
    sq = squared_error(decoder, thetas, x, mean, logvar, eps_z)  # (B,)
    terms = {
        "loglik": scale * log_gaussian(sq, x.shape[-1], sigma_x).sum(),
        "kl_z": q_scale * gaussian_kl(q_mean, q_logvar).sum(),
        "kl_theta": decoder.kl(),
    }
    terms["elbo"] = terms["loglik"] - terms["kl_z"] - terms["kl_theta"]
    if objective == "paper":
        eps_rows = noise.z if all_rows_noise else eps_z
        terms["objective"] = (
            scale * (-sq / (2 * sigma_x**2)).sum()
            + q_scale * _paper_log_ratio(q_mean, 0.5 * q_logvar, eps_rows, 1.0)
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
