"""F-VI: free variational parameters per datapoint, an N x 2d table."""

from __future__ import annotations

import torch
from torch import nn

from .base import Family, spread_factor
from .declared import FactorizedDeclared


class Factorized(FactorizedDeclared, Family):
    """q(z_n) = N(mean[n], diag exp(logvar[n])); the images are ignored, the indices used.

    One (N, 2d) table, row n = [mean_n, logvar_n]: one lookup per step. Sparse (the default), a
    step's gradient covers only the minibatch's rows and SparseAdam moves those alone; dense,
    Adam keeps moving every row by its momentum, at the cost of a pass over all N rows a step.
    """

    def __init__(
        self, n_data: int, latent_dim: int, init: str = "prior", sparse: bool = True,
        spread_factor: float = 1.0,
    ):
        super().__init__()
        self.table = nn.Embedding(n_data, 2 * latent_dim, sparse=sparse)  # row n: mean_n, raw spread_n
        nn.init.zeros_(self.table.weight)  # every q_n at the prior N(0, I)
        if init == "random":  # draws from the caller's (seeded) global RNG
            with torch.no_grad():
                self.mean.normal_()
                log_sd = torch.randn(n_data, latent_dim) - 1  # log-sd ~ N(-1, 1)
                self.table.weight[:, latent_dim:] = 2 / spread_factor * log_sd

    @property
    def mean(self) -> torch.Tensor:
        return self.table.weight[:, : self.table.embedding_dim // 2]  # (N, d) view

    @property
    def spread(self) -> torch.Tensor:
        """(N, d) view: the raw spreads, log-variance / spread_factor."""
        return self.table.weight[:, self.table.embedding_dim // 2 :]

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Factorized:
        opts = cfg.family_options
        return cls(n_data, cfg.latent_dim, opts["init"], opts["optimizer"] == "sparse", spread_factor(cfg))

    def forward(
        self, x: torch.Tensor | None, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.table(idx).chunk(2, dim=-1)  # mean, raw spread: (B, d) each
