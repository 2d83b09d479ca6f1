"""Constant VI: one q shared by every latent, the lower baseline."""

from __future__ import annotations

import torch
from torch import nn


class Constant(nn.Module):
    """q(z_n) = N(mean, diag exp(logvar)) for every n; images and indices only give the count."""

    has_test_time_q = True

    def __init__(self, latent_dim: int):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(latent_dim))
        self.logvar = nn.Parameter(torch.zeros(latent_dim))

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Constant:
        return cls(cfg.latent_dim)

    def forward(
        self, x: torch.Tensor | None, idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[0] if x is not None else idx.shape[0]
        return self.mean.expand(n, -1), self.logvar.expand(n, -1)  # (B, d) each
