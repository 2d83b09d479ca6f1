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
        # start every q_n at the prior N(0, I)
        self.mean = nn.Embedding(n_data, latent_dim, sparse=True)
        self.logvar = nn.Embedding(n_data, latent_dim, sparse=True)
        nn.init.zeros_(self.mean.weight)
        nn.init.zeros_(self.logvar.weight)

    @classmethod
    def from_config(cls, cfg, n_data: int, data_dim: int) -> Factorized:
        return cls(n_data, cfg.latent_dim)

    def forward(
        self, x: torch.Tensor | None, idx: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.mean(idx), self.logvar(idx)  # (B, d) each
