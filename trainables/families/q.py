"""q(z_n) for a set of datapoints, as the objective, test-time inference and the gap use it,
whatever its form. A family's ``q(x, idx)`` returns one; ``DiagonalGaussian`` is the form of the
three families of the study, and the template for richer ones (full covariance, flows):

    z = q.sample(eps)            # (S, n, d) reparameterized from standard normal eps (S, n, d)
    q.kl(z)                      # (n,) KL(q_n || N(0, I)): closed form where known, else Monte
                                 #      Carlo from these draws (closed_form_kl says which)
    q.log_prob(z)                # (S, n)
    q.point()                    # (n, d) the point reconstruction decodes: the mean
    q.local(); type(q).from_local(**params)   # its per-datapoint parameters (the gap's q*)
    q[rows]                      # the rows ``rows``
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, diag exp(logvar)) || N(0, I)) per row, (rows,): 0.5 sum(var - 1 - logvar + mean^2),
    written out since with latent_terms "all" it runs over all N rows every step; expm1 keeps
    its precision near the prior (var - 1 - logvar ~ logvar^2 / 2), where collapsed latents sit."""
    return 0.5 * (torch.expm1(logvar) - logvar + mean.square()).sum(-1)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z | 0, I), summed over the last dimension."""
    return -0.5 * (z.square().sum(-1) + z.shape[-1] * math.log(2 * math.pi))


@dataclass
class DiagonalGaussian:
    """q(z_n) = N(mean_n, diag exp(logvar_n))."""

    mean: torch.Tensor  # (n, d)
    logvar: torch.Tensor  # (n, d)
    closed_form_kl = True
    fit_samples = 1  # draws a step when q is optimized per image (see FullCovGaussian)

    @classmethod
    def prior(cls, n: int, d: int, like: torch.Tensor) -> DiagonalGaussian:
        return cls(like.new_zeros(n, d), like.new_zeros(n, d))

    def sample(self, eps: torch.Tensor) -> torch.Tensor:
        return self.mean + (0.5 * self.logvar).exp() * eps  # (S, n, d)

    def kl(self, z: torch.Tensor | None = None) -> torch.Tensor:
        return gaussian_kl(self.mean, self.logvar)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        eps = (z - self.mean) * (-0.5 * self.logvar).exp()
        return standard_normal_log_prob(eps) - 0.5 * self.logvar.sum(-1)

    def point(self) -> torch.Tensor:
        return self.mean

    def local(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "logvar": self.logvar}

    @classmethod
    def from_local(cls, mean: torch.Tensor, logvar: torch.Tensor) -> DiagonalGaussian:
        return cls(mean, logvar)

    def __getitem__(self, rows) -> DiagonalGaussian:
        return type(self).from_local(**{k: v[rows] for k, v in self.local().items()})


@functools.lru_cache(maxsize=8)
def _below_diagonal(d: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.tril_indices(d, d, offset=-1, device=device)
    return rows, cols


def where(mask: torch.Tensor, a, b):
    """Row by row: ``a`` where mask (n,) is true, else ``b`` (two q of one type)."""
    def pick(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *[1] * (x.ndim - 1)), x, y)

    return type(a).from_local(**{k: pick(v, b.local()[k]) for k, v in a.local().items()})


def detached(q):
    return type(q).from_local(**{k: v.detach() for k, v in q.local().items()})


@dataclass
class FullCovGaussian:
    """q(z_n) = N(mean_n, L_n L_n^T), L_n lower triangular with a positive diagonal: held as the
    log of its diagonal and its d(d-1)/2 entries below it (``local``), so any values are valid."""

    mean: torch.Tensor  # (n, d)
    log_diag: torch.Tensor  # (n, d)
    lower: torch.Tensor  # (n, d(d-1)/2), row-major below the diagonal
    closed_form_kl = True
    # draws a step when q is optimized per image (inference.optimize_local_q): Adam's steps, each
    # entry's normalized, walk d(d-1)/2 entries under one draw's noise at random; measured on a
    # trained full-cov k = 4 (100 images, benchmarks/qstar_draws.py): one draw stops after 100 steps
    # 211 nats below where it started, 8 draws gain 138 nats
    fit_samples = 8

    @property
    def scale_tril(self) -> torch.Tensor:  # (n, d, d)
        n, d = self.mean.shape
        rows, cols = _below_diagonal(d, self.mean.device)
        tril = self.mean.new_zeros(n, d, d)
        tril[:, rows, cols] = self.lower
        return tril + torch.diag_embed(self.log_diag.exp())

    @classmethod
    def prior(cls, n: int, d: int, like: torch.Tensor) -> FullCovGaussian:
        return cls(like.new_zeros(n, d), like.new_zeros(n, d), like.new_zeros(n, d * (d - 1) // 2))

    def sample(self, eps: torch.Tensor) -> torch.Tensor:
        return self.mean + torch.einsum("nij,snj->sni", self.scale_tril, eps.to(self.mean.dtype))  # (S, n, d)

    def kl(self, z: torch.Tensor | None = None) -> torch.Tensor:
        """0.5 (tr(L L^T) + |mean|^2 - d - log det(L L^T)), the KL to N(0, I) in closed form;
        tr(L L^T) is the sum of L's squared entries, read off its parts (no (n, d, d) tensor)."""
        trace = (2 * self.log_diag).exp().sum(-1) + self.lower.square().sum(-1)
        return 0.5 * (trace + self.mean.square().sum(-1) - self.mean.shape[-1] - 2 * self.log_diag.sum(-1))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        diff = (z - self.mean).unsqueeze(-1)  # (S, n, d, 1)
        tril = self.scale_tril.expand(z.shape[0], -1, -1, -1)
        eps = torch.linalg.solve_triangular(tril, diff, upper=False).squeeze(-1)  # L^-1 (z - mean)
        return standard_normal_log_prob(eps) - self.log_diag.sum(-1)

    def point(self) -> torch.Tensor:
        return self.mean

    def local(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "log_diag": self.log_diag, "lower": self.lower}

    @classmethod
    def from_local(cls, mean, log_diag, lower) -> FullCovGaussian:
        return cls(mean, log_diag, lower)

    def __getitem__(self, rows) -> FullCovGaussian:
        return type(self).from_local(**{k: v[rows] for k, v in self.local().items()})
