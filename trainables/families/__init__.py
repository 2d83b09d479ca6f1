"""Variational families for the latents: each answers "what is q(z_n) for these datapoints?"

A family is an nn.Module whose ``forward(x, idx)`` takes the minibatch's images x (B, D) and
their row indices idx (B,) in the training set, and returns q's mean and log-variance,
each (B, d). ``has_test_time_q`` says whether it can answer for images it was not fit on.
"""

from __future__ import annotations

from torch import nn

from .amortized import Amortized
from .constant import Constant
from .factorized import Factorized

FAMILIES: dict[str, type[nn.Module]] = {
    "amortized": Amortized,
    "factorized": Factorized,
    "constant": Constant,
}


def build(cfg, n_data: int, data_dim: int) -> nn.Module:
    """The family ``cfg.family`` sized for n_data points of dimension data_dim."""
    return FAMILIES[cfg.family].from_config(cfg, n_data, data_dim)


__all__ = ["FAMILIES", "Amortized", "Constant", "Factorized", "build"]
