"""What each built-in family declares (name, label, order, widths, test-time q, options), read without torch.

Its name, label and order; whether the spec's widths fan out over it; whether it answers for test
images; its own settings (``Options``).

The sweep's spec and config checks, ``status`` and the analysis read these alone, so reading a
results table or validating a spec never imports torch. Each family's implementation (a torch
module, ``base.Family``) inherits its declarations from here: one place states them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..settings import non_negative_int, positive_int, positive_number, setting


@dataclass(frozen=True)
class NoOptions:
    """A family without settings of its own."""


class Declared:
    """A family's declarations (class attributes; ``base.Family`` documents each)."""

    name: ClassVar[str]  # in specs and on the command line
    label: ClassVar[str]  # in tables and figures (width families: "k=<width>" instead)
    order: ClassVar[int] = 100  # display order: narrow-to-wide encoders first, baselines last
    has_width: ClassVar[bool] = False  # an encoder of width k: the spec's `widths` fan out over it
    has_test_time_q: ClassVar[bool] = True  # answers for images it was not fit on
    per_datapoint: ClassVar[bool] = False  # its parameters are rows, one per training image (F-VI)
    refinable: ClassVar[bool] = False  # evaluate's semi-amortized refinement of its q applies
    Options: ClassVar[type] = NoOptions  # its own settings: TrialConfig.family_options

    @classmethod
    def variant(cls, width: int | None) -> str:
        """How tables and figures name one of its configurations."""
        return f"{cls.label} k={int(width)}" if cls.has_width else cls.label


@dataclass(frozen=True)
class ConstantOptions:
    init: str = setting(
        "prior", "where the shared q starts: prior N(0, I), or random (mean N(0,1), log-sd N(0,1), "
        "Margossian & Blei's code)", choices=("prior", "random"),
    )


@dataclass(frozen=True)
class FactorizedOptions:
    init: str = setting(
        "prior", "where each q_n starts: prior N(0, I), or random (mean N(0,1), log-sd N(0,1) - 1, "
        "Margossian & Blei's code)", choices=("prior", "random"),
    )
    optimizer: str = setting(
        "sparse", "sparse: SparseAdam moves only the minibatch's rows (a row moves once an epoch); "
        "dense: Adam over the whole table, whose momentum moves every row every step",
        choices=("sparse", "dense"),
    )


@dataclass(frozen=True)
class FlowOptions:
    layers: int = setting(4, "affine coupling layers (alternating halves of z)", check=positive_int)
    hidden: int = setting(64, "hidden width H of each layer's coupling network", check=positive_int)


@dataclass(frozen=True)
class SemiAmortizedOptions:
    steps: int = setting(5, "K: refinement steps per image in every training step (0: plain A-VI)",
                         check=non_negative_int)
    step_size: float = setting(0.1, "gradient-ascent step on each image's mean and log-variance",
                               check=positive_number)
    max_grad_norm: float = setting(
        5.0, "each step's gradient of an image's ELBO, for its mean and for its log-variance, clipped to "
        "this norm (Kim et al.'s svi_max_grad_norm, 5, which clips the minibatch's)", check=positive_number)


class AmortizedDeclared(Declared):
    name, label, order = "amortized", "amortized", 10
    has_width = True
    refinable = True

    @classmethod
    def variant(cls, width: int | None) -> str:
        if cls.name == AmortizedDeclared.name:  # the study's encoder: the shortest label (not a subclass's)
            return f"k={int(width)}"
        return super().variant(width)


class FullCovarianceDeclared(AmortizedDeclared):
    name, label, order = "fullcov", "full-cov", 20


class SemiAmortizedDeclared(AmortizedDeclared):
    name, label, order = "sa_vae", "SA-VAE", 30
    Options = SemiAmortizedOptions


class FlowDeclared(AmortizedDeclared):
    name, label, order = "flow", "flow", 25
    Options = FlowOptions


class FactorizedDeclared(Declared):
    name, label, order = "factorized", "factorized", 900
    has_test_time_q = False
    per_datapoint = True
    Options = FactorizedOptions


class ConstantDeclared(Declared):
    name, label, order = "constant", "constant", 1000
    Options = ConstantOptions


# the built-in families in registration order: their declarations, and where each one's
# implementation lives ("module:class" in this package), imported when a trial first needs it
BUILT_IN: dict[str, tuple[type[Declared], str]] = {
    AmortizedDeclared.name: (AmortizedDeclared, "amortized:Amortized"),
    FactorizedDeclared.name: (FactorizedDeclared, "factorized:Factorized"),
    ConstantDeclared.name: (ConstantDeclared, "constant:Constant"),
    FullCovarianceDeclared.name: (FullCovarianceDeclared, "fullcov:FullCovariance"),
    SemiAmortizedDeclared.name: (SemiAmortizedDeclared, "sa_vae:SemiAmortized"),
    FlowDeclared.name: (FlowDeclared, "flow:Flow"),
}
