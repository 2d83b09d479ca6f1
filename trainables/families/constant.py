"""Constant VI: one q shared by every latent, the lower baseline."""

from __future__ import annotations

import torch
from torch import nn

from .base import Family, spread_factor
from .declared import ConstantDeclared


class Constant(ConstantDeclared, Family):
    """q(z_n) = N(mean, diag exp(logvar)) for every n; images and indices only give the count."""

    def __init__(self, latent_dim: int, init: str = "prior", spread_factor: float = 1.0):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(latent_dim))
        self.spread = nn.Parameter(torch.zeros(latent_dim))  # raw: log-variance / spread_factor
        if init == "random":  # draws from the caller's (seeded) global RNG
            with torch.no_grad():
                self.mean.normal_()
                self.spread.copy_(2 / spread_factor * torch.randn(latent_dim))  # log-sd ~ N(0, 1)

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Constant:
        return cls(cfg.latent_dim, cfg.family_options["init"], spread_factor(cfg))

    def forward(
        self, x: torch.Tensor | None, idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0] if x is not None else idx.shape[0]
        return self.mean.expand(n, -1), self.spread.expand(n, -1)  # (B, d) each
