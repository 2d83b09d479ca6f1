"""One datapoint's ELBO terms under the decoder: the Gaussian log-likelihood of its image, averaged
over draws of (theta, z), and its latent KL, as the objective (elbo.py), SA-VAE's refinement,
test-time inference and the gap all compute them.

Log-densities keep their normalizing constants, so the numbers are true nats.
"""

from __future__ import annotations

import math

import torch


def squared_error(decoder, thetas: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """||x_n - Omega(z_n; theta)||^2 per datapoint, (B,), averaged over the S draws of (theta, z)."""
    sq = 0.0
    for s in range(thetas.shape[0]):
        recon = decoder(z[s], thetas[s])  # (B, D)
        sq = sq + (x - recon).square().sum(-1)  # (B,)
    return sq / thetas.shape[0]


def z_terms(decoder, thetas, x, q, eps_z, sigma_x: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-datapoint E_q log p(x_n | z_n, theta) (MC over S) and KL(q_n || N(0, I)), each (B,)."""
    z = q.sample(eps_z)  # (S, B, d)
    return log_gaussian(squared_error(decoder, thetas, x, z), x.shape[-1], sigma_x), q.kl(z)


def log_gaussian(sq: torch.Tensor, dim: int, sigma_x: float) -> torch.Tensor:
    """log N(x | recon, sigma_x^2 I) over ``dim`` pixels from sq = ||x - recon||^2; written out
    (not Normal.log_prob) so the (B, D) tensor is walked twice, not five times."""
    return -0.5 * dim * math.log(2 * math.pi * sigma_x**2) - sq / (2 * sigma_x**2)
