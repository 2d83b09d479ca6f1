"""F-VI: free variational parameters per datapoint, two N x d tables."""

from __future__ import annotations

import torch
from torch import nn


class Factorized(nn.Module):
    """q(z_n) = N(mean[n], diag exp(logvar[n])); the images are ignored, the indices used.

    The tables are sparse embeddings: a step's gradient covers only the minibatch's rows, so
    SparseAdam moves those rows alone (dense Adam would keep moving every row by momentum
    and pay a pass over all N rows per step).
    """

    has_test_time_q = False

    def __init__(self, n_data: int, latent_dim: int):
        super().__init__()
        # one (N, 2d) table, row n = [mean_n, logvar_n]: one lookup and one sparse update per
        # step; every q_n starts at the prior N(0, I)
        self.table = nn.Embedding(n_data, 2 * latent_dim, sparse=True)
        nn.init.zeros_(self.table.weight)

    @property
    def mean(self) -> torch.Tensor:
        return self.table.weight[:, : self.table.embedding_dim // 2]  # (N, d) view

    @property
    def logvar(self) -> torch.Tensor:
        return self.table.weight[:, self.table.embedding_dim // 2 :]  # (N, d) view

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Factorized:
        return cls(n_data, cfg.latent_dim)

    def forward(
        self, x: torch.Tensor | None, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.table(idx).chunk(2, dim=-1)  # (B, d) each
