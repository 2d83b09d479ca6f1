"""The study engine: data, Bayesian decoder, variational families, ELBO, fit loop. No Ray here."""

from .config import ConfigError, TrialConfig
from .data import Data, load
from .fit import NonFiniteELBOError, Trial

__all__ = ["ConfigError", "Data", "NonFiniteELBOError", "Trial", "TrialConfig", "load"]
