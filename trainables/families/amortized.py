"""A-VI: an encoder MLP with two hidden layers of width k maps x_n to q(z_n)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Family
from .declared import AmortizedDeclared


class Amortized(AmortizedDeclared, Family):
    """q(z_n) = N(mu(x_n), diag exp(logvar(x_n))); the indices are ignored."""

    def __init__(self, data_dim: int, width: int, latent_dim: int, slope: float = 0.2):
        super().__init__()
        # two hidden layers, as Margossian & Blei's code has it (one public re-implementation built one)
        self.body = nn.Sequential(
            nn.Linear(data_dim, width),
            nn.LeakyReLU(slope),
            nn.Linear(width, width),
            nn.LeakyReLU(slope),
        )
        self.mean_head = nn.Linear(width, latent_dim)
        self.logvar_head = nn.Linear(width, latent_dim)  # the raw spread (log-sd with spread_param log_sd)

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Amortized:
        return cls(data_dim, cfg.width, cfg.latent_dim, cfg.slope)

    def forward(
        self, x: torch.Tensor, idx: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)  # (B, k)
        return self.mean_head(h), self.logvar_head(h)  # (B, d) each
