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


def where(mask: torch.Tensor, a, b):
    """Row by row: ``a`` where mask (n,) is true, else ``b`` (two q of one type)."""
    def pick(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.where(mask.view(-1, *[1] * (x.ndim - 1)), x, y)

    return type(a).from_local(**{k: pick(v, b.local()[k]) for k, v in a.local().items()})


def detached(q):
    return type(q).from_local(**{k: v.detach() for k, v in q.local().items()})
