"""The family contract: what the engine, the sweep and the analysis ask of a family for z.

A family answers one question: "given these datapoints x (B, D) and their rows idx (B,) in the
training set, what is q(z_n)?" ``q(x, idx)`` returns it as a ``q.DiagonalGaussian`` (or another
form with the same methods, named by ``q_type``). A family writes ``forward``, which returns the
mean and the raw spread, each (B, d), then any further outputs of its own; ``q`` turns the raw
spread into a log-variance (x1 with spread_param logvar, x2 with log_sd: the one place the
setting is applied) and ``make_q`` builds the q from them. What the system needs to know it
declares as attributes (class ones, which an instance may set from its options; the system reads
them from an instance), so no module outside this package asks for a family by name.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .declared import Declared
from .q import DiagonalGaussian


def spread_factor(cfg: Any) -> float:
    """Log-variance per unit of a family's raw spread: 1 (spread_param logvar), or 2 (log_sd, their code)."""
    return 2.0 if cfg.spread_param == "log_sd" else 1.0


class Family(Declared, nn.Module):
    # name, label, order, has_width, has_test_time_q, per_datapoint, refinable, Options: declared.Declared
    # its q is refined inside the objective (``refine``): SA-VAE, which sets it per instance from its
    # options (steps 0: no refinement), so it is read off an instance (``families.probe``)
    refines: bool = False
    q_type: ClassVar[type] = DiagonalGaussian  # the form of its q: test-time q and the gap's q* take it

    spread_factor: float = 1.0  # log-variance per unit of raw spread; ``families.build`` sets it

    @classmethod
    def from_config(cls, cfg: Any, n_data: int, data_dim: int) -> Family:
        """The family for ``cfg`` (a TrialConfig) sized for n_data points of dimension data_dim."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor | None, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The mean and the raw spread of q(z_n), each (B, d), then the family's further outputs."""
        raise NotImplementedError

    def q(self, x: torch.Tensor | None, idx: torch.Tensor) -> DiagonalGaussian:
        """q(z_n) for the datapoints x (B, D) with training rows idx (B,)."""
        mean, spread, *rest = self(x, idx)
        f = self.spread_factor
        return self.make_q(mean, spread if f == 1.0 else f * spread, *rest)

    def make_q(self, mean: torch.Tensor, logvar: torch.Tensor, *rest: torch.Tensor):
        """The q of ``forward``'s outputs, its spread as a log-variance: ``q_type(mean, logvar)``."""
        return self.q_type(mean, logvar, *rest)

    def refine(self, q, x: torch.Tensor, decoder, thetas: torch.Tensor, eps: torch.Tensor, sigma_x: float):
        """q after the family's own refinement on images x (B, D), given the decoder, draws of theta
        (S, P) and z's noise eps (S, B, d); the identity but for families that refine (``refines``)."""
        return q
