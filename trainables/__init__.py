"""The study engine: data, Bayesian decoder, variational families, ELBO, fit loop. No Ray here.

Its names are imported on first use, so a module that needs none of torch (trainables.oneline,
trainables.config read by the analysis) does not load it.
"""

import importlib

_WHERE = {"ConfigError": "config", "TrialConfig": "config", "Data": "data", "load": "data", "Fit": "fit",
          "NonFiniteELBOError": "fit", "SeedRun": "fit"}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'trainables' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
