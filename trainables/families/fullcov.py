"""A richer amortized q: the encoder of A-VI, with a full covariance through a Cholesky factor.

Cremer, Li & Duvenaud (2018) ask whether a richer family shrinks the approximation gap while
the encoder's share, the amortization gap, stays: this family lets the sweep answer it across
encoder widths, beside the diagonal one. Its q* (the gap) is each image's own full-covariance
Gaussian.
"""

from __future__ import annotations

import torch
from torch import nn

from .amortized import Amortized
from .declared import FullCovarianceDeclared
from .q import FullCovGaussian


class FullCovariance(FullCovarianceDeclared, Amortized):
    """q(z_n) = N(mu(x_n), L(x_n) L(x_n)^T): the two-hidden-layer encoder of width k, with heads for
    the mean, the log of L's diagonal and the d(d-1)/2 entries of L below it."""

    q_type = FullCovGaussian

    def __init__(self, data_dim: int, width: int, latent_dim: int, slope: float = 0.2):
        super().__init__(data_dim, width, latent_dim, slope)
        self.lower_head = nn.Linear(width, latent_dim * (latent_dim - 1) // 2)
        with torch.no_grad():  # starts diagonal: the lower entries grow only as the data asks
            self.lower_head.weight.zero_()
            self.lower_head.bias.zero_()

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> FullCovariance:
        return cls(data_dim, cfg.width, cfg.latent_dim, cfg.slope)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        h = self.body(x)  # (B, k)
        return self.mean_head(h), self.logvar_head(h), self.lower_head(h)

    def make_q(self, mean, logvar, lower) -> FullCovGaussian:
        """L's diagonal squared is exp(logvar): its log is half the log-variance."""
        return FullCovGaussian(mean, 0.5 * logvar, lower)
