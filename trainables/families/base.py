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

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from .q import DiagonalGaussian


def spread_factor(cfg: Any) -> float:
    """Log-variance per unit of a family's raw spread: 1 (spread_param logvar), or 2 (log_sd, their code)."""
    return 2.0 if cfg.spread_param == "log_sd" else 1.0


@dataclass(frozen=True)
class NoOptions:
    """A family without settings of its own."""


class Family(nn.Module):
    name: ClassVar[str]  # in specs and on the command line
    label: ClassVar[str]  # in tables and figures (width families: "k=<width>" instead)
    order: ClassVar[int] = 100  # display order: narrow-to-wide encoders first, baselines last
    has_width: ClassVar[bool] = False  # an encoder of width k: the spec's `widths` fan out over it
    has_test_time_q: ClassVar[bool] = True  # answers for images it was not fit on
    per_datapoint: ClassVar[bool] = False  # its parameters are rows, one per training image (F-VI)
    refinable: ClassVar[bool] = False  # evaluate's semi-amortized refinement of its q applies
    # its q is refined inside the objective (``refine``): SA-VAE, which sets it per instance from its
    # options (steps 0: no refinement), so it is read off an instance (``families.probe``)
    refines: bool = False
    Options: ClassVar[type] = NoOptions  # its own settings: TrialConfig.family_options
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

    @classmethod
    def variant(cls, width: int | None) -> str:
        """How tables and figures name one of its configurations."""
        return f"{cls.label} k={int(width)}" if cls.has_width else cls.label
