"""The minibatch ELBO of SPEC.md, returned as named terms.

    ELBO ~= (N/|B|) sum_{n in B} [ E_q log p(x_n | z_n, theta) - KL(q_n(z_n) || N(0, I)) ]
            - KL(q(theta) || N(0, sigma_theta^2 I))

The likelihood is a Monte Carlo average over S reparameterized draws (Kingma & Welling,
arXiv 1312.6114), one theta per draw shared by the minibatch. Both KL terms are taken in
closed form (Gaussian against Gaussian prior), which equals E_q[log p - log q] with lower
variance. Log-densities keep their normalizing constants, so the numbers are true nats.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.distributions import Normal, kl_divergence

TERMS = ("elbo", "loglik", "kl_z", "kl_theta")


class Noise(NamedTuple):
    theta: torch.Tensor  # (S, P) standard normal
    z: torch.Tensor  # (S, B, d) standard normal


def draw_noise(
    num_params: int, batch: int, latent_dim: int, samples: int, generator: torch.Generator
) -> Noise:
    dev = generator.device
    return Noise(
        torch.randn(samples, num_params, generator=generator, device=dev),
        torch.randn(samples, batch, latent_dim, generator=generator, device=dev),
    )


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
    sd = (0.5 * logvar).exp()  # (B, d)
    z = mean + sd * eps_z  # (S, B, d)
    sq = 0.0
    for s in range(thetas.shape[0]):
        recon = decoder(z[s], thetas[s])  # (B, D)
        sq = sq + (x - recon).square().sum(-1)  # (B,)
    loglik = log_gaussian(sq / thetas.shape[0], x.shape[-1], sigma_x)  # averaged over the S draws
    q = Normal(mean, sd, validate_args=False)
    prior = Normal(mean.new_zeros(()), mean.new_ones(()), validate_args=False)
    kl_z = kl_divergence(q, prior).sum(-1)
    return loglik, kl_z


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
) -> dict[str, torch.Tensor]:
    """Unbiased estimate of the full-data ELBO from minibatch x (B, D) with row indices idx (B,)."""
    mean, logvar = family(x, idx)  # (B, d) each
    thetas = decoder.sample(noise.theta)  # (S, P)
    loglik, kl_z = z_terms(decoder, thetas, x, mean, logvar, noise.z, sigma_x)
    scale = n_total / x.shape[0]
    terms = {
        "loglik": scale * loglik.sum(),
        "kl_z": scale * kl_z.sum(),
        "kl_theta": decoder.kl(),
    }
    terms["elbo"] = terms["loglik"] - terms["kl_z"] - terms["kl_theta"]
    return terms
