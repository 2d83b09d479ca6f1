"""F-VI: free variational parameters per datapoint, an N x 2d table."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..settings import setting
from .base import Family, spread_factor


@dataclass(frozen=True)
class FactorizedOptions:
    init: str = setting(
        "prior", "where each q_n starts: prior N(0, I), or random (mean N(0,1), log-sd N(0,1) - 1, "
        "Margossian & Blei's code)", choices=("prior", "random"),
    )
    optimizer: str = setting(
        "sparse", "sparse: SparseAdam moves only the minibatch's rows (a row moves once an epoch); "
        "dense: Adam over the whole table, whose momentum moves every row every step",
        choices=("sparse", "dense"),
    )


class Factorized(Family):
    """q(z_n) = N(mean[n], diag exp(logvar[n])); the images are ignored, the indices used.

    One (N, 2d) table, row n = [mean_n, logvar_n]: one lookup per step. Sparse (the default), a
    step's gradient covers only the minibatch's rows and SparseAdam moves those alone; dense,
    Adam keeps moving every row by its momentum, at the cost of a pass over all N rows a step.
    """

    name, label, order = "factorized", "factorized", 900
    has_test_time_q = False
    per_datapoint = True
    Options = FactorizedOptions

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
