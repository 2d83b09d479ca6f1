"""The study engine: data, Bayesian decoder, variational families, ELBO, fit loop. No Ray here."""

from .config import ConfigError, TrialConfig
from .data import Data, load
from .fit import Fit, NonFiniteELBOError, SeedRun

__all__ = ["ConfigError", "Data", "Fit", "NonFiniteELBOError", "SeedRun", "TrialConfig", "load"]
