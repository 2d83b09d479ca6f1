"""One trial's settings: a frozen dataclass, strict on unknown keys and bad values.

Defaults are the paper's setup (Margossian & Blei 2024, section 4.4; see docs/science.md), except where a
field's help says how their code differs. Each field's ``help`` is what the command line and the
spec reference (docs/reference.md) show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .settings import (
    boolean,
    is_int,
    non_negative_int,
    optional,
    positive_int,
    positive_number,
    problems,
    setting,
    unit_interval,
)

if TYPE_CHECKING:
    from . import families

DATASETS = ("mnist", "fashion_mnist", "cifar10")
# Where a sweep spec (sweep/spec.py) sets each field, the field's metadata "sweep" (sweep_keys reads it):
#   axis    a `train` setting, which may also be a `grid` axis (the default)
#   train   a `train` setting only (data_root: a path, not a quantity to compare)
#   fanout  the spec's datasets, families, widths and seeds
#   key     a top-level spec key of its own (eval_every: report_every; family_options)


class ConfigError(ValueError):
    """A setting is unknown or out of range; the message names every problem at once."""


@dataclass(frozen=True)
class TrialConfig:
    # data
    dataset: str = setting("fashion_mnist", "one of mnist, fashion_mnist, cifar10", choices=DATASETS,
                           sweep="fanout")
    n_train: int = setting(10_000, "training images: the data (N)", check=positive_int)
    n_test: int = setting(10_000, "the first n_test test images measure test MSE", check=positive_int)
    train_subset: str = setting(
        "first", "which n_train training images: first, or random (drawn with the seed, as "
        "Margossian & Blei's shuffled loader did)", choices=("first", "random"),
    )
    data_root: str | None = setting(
        None, "torchvision-layout folder with the dataset; unset: Debian's files, then download",
        sweep="train",
    )
    # variational family for z
    family: str = setting(
        "amortized", "q(z_n): amortized (encoder), factorized (per-point), constant, or a family "
        "a user's module registers", sweep="fanout",
    )
    width: int | None = setting(None, "encoder hidden width k; for families with an encoder (required there)",
                                sweep="fanout")
    family_options: dict[str, Any] = setting(
        help="the family's own settings (tables below); unset ones take their defaults", factory=dict,
        sweep="key",
    )
    spread_param: str = setting(
        "logvar", "how the families hold q's spread: logvar (log-variance), or log_sd (log-sd, as their "
        "code: Adam then moves the log-variance twice as fast)", choices=("logvar", "log_sd"),
    )
    # model (docs/science.md, 'The model')
    latent_dim: int = setting(64, "dimension d of each latent z_n", check=positive_int)
    hidden_dim: int = setting(256, "decoder hidden width H", check=positive_int)
    slope: float = setting(0.2, "LeakyReLU negative slope of decoder and encoder; 1.0 = linear",
                           check=unit_interval)
    sigma_x: float = setting(0.7071, "likelihood sd; the paper's code used variance 1/2 (0.7071)",
                             check=positive_number)
    sigma_theta: float = setting(1.0, "prior sd of every decoder weight and bias (their code: 0.7071)",
                                 check=positive_number)
    theta_init: str = setting(
        "paper", "q(theta) start: paper (mean 0, log-sd -2) or torch (nn.Linear means, log-sd -6)",
        choices=("paper", "torch"),
    )
    # objective
    mc_samples: int = setting(1, "Monte Carlo samples S per ELBO estimate", check=positive_int)
    latent_terms: str = setting(
        "minibatch", "each step's prior-and-entropy term of z: minibatch (its rows, scaled N/B) or "
        "all (every row, exactly, as their code: every F-VI row moves every step; an encoder "
        "sees all N images every step)", choices=("minibatch", "all"),
    )
    objective: str = setting(
        "elbo", "what the optimizer maximizes: elbo (true nats), or paper (their code's: log q "
        "with the sd where the variance belongs, Monte Carlo prior and entropy, constants dropped); "
        "the ELBO reported is always the true one", choices=("elbo", "paper"),
    )
    # optimization
    epochs: int = setting(5_000, "passes over the n_train images", check=positive_int)
    batch_size: int = setting(1_000, "minibatch size B", check=positive_int)
    shuffle: bool = setting(
        True, "reshuffle the minibatches every epoch; false: fixed contiguous ones (their code)",
        check=boolean,
    )
    lr: float = setting(1e-3, "Adam learning rate", check=positive_number)
    grad_clip: float | None = setting(
        None, "clip the norm of each step's gradient over the dense parameters (decoder, encoder, "
        "a dense F-VI table; not F-VI's sparse table) to this; unset: no clipping, as the paper. "
        "Unit: nats per datapoint, the scale of Kim et al.'s loss, who clip at 5; the step's objective "
        "sums all n_train images, so its gradient is clipped at grad_clip x n_train",
        check=optional(positive_number),
    )
    lr_schedule: str = setting(
        "constant", "constant, or step3: learning rate x0.1 at each third", choices=("constant", "step3")
    )
    seed: int = setting(0, "seeds parameter init, shuffling and Monte Carlo noise", check=non_negative_int,
                        sweep="fanout")
    eval_every: int = setting(1, "compute train/test MSE every this many epochs (and the last)",
                              check=positive_int, sweep="key")
    mse_threshold: float = setting(0.03, "train MSE whose first crossing is timed (epochs, seconds)",
                                   check=positive_number)

    def __post_init__(self) -> None:
        from . import families  # here, not at the top: reading a results table needs no torch

        out = problems(self)
        if self.family not in families.names():
            out.append(f"family={self.family!r} is not one of {', '.join(families.names())}")
        else:
            opts, bad = families.resolve_options(self.family, self.family_options)
            out += bad
            object.__setattr__(self, "family_options", opts)  # defaults filled in, once
            out += _width_problems(self)
            out += _mode_problems(self, probe=not out)
        if is_int(self.batch_size) and is_int(self.n_train) and self.batch_size > self.n_train > 0:
            out.append(f"batch_size={self.batch_size} exceeds n_train={self.n_train}")
        if self.data_root is not None and not isinstance(self.data_root, str):
            out.append(f"data_root={self.data_root!r} must be a path string or unset")
        if out:
            raise ConfigError("; ".join(out))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialConfig:
        """Build from a plain dict, refusing keys this config does not have."""
        unknown = sorted(set(d) - set(field_names()))
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {unknown}; accepted: {', '.join(field_names())}"
            )
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def family_class(self) -> type[families.Family]:
        from . import families

        return families.get(self.family)


def _width_problems(c: TrialConfig) -> list[str]:
    from . import families

    if families.declared(c.family).has_width:
        if not is_int(c.width) or c.width <= 0:
            return [f"width={c.width!r} must be a positive integer for family {c.family!r}"]
    elif c.width is not None:
        with_width = [n for n in families.names() if families.declared(n).has_width]
        return [f"width={c.width!r} applies only to {', '.join(with_width)}, not {c.family!r}"]
    return []


def _mode_problems(c: TrialConfig, probe: bool) -> list[str]:
    """Settings the family cannot take; ``probe``: the rest are valid, so a family can be built to
    read what it does with its options, as the trial's own will. Each check builds on the family's
    implementation (torch) and runs only where its setting asks."""
    from . import families

    out = []
    if c.objective == "paper" and not _diagonal(families.get(c.family)):
        out.append(f"objective='paper' is their code's, for diagonal Gaussian q; {c.family!r}'s is not")
    if c.latent_terms == "all" and probe and families.probe(c).refines:
        out.append(f"latent_terms='all' with {c.family!r}: its refinement runs on the minibatch's rows only")
    return out


def _diagonal(family: type) -> bool:
    from .families.q import DiagonalGaussian

    return family.q_type is DiagonalGaussian


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrialConfig))


def sweep_keys(*roles: str) -> tuple[str, ...]:
    """The fields a sweep spec sets in one of ``roles`` (axis, train, fanout, key), in the schema's order."""
    return tuple(f.name for f in dataclasses.fields(TrialConfig) if f.metadata["sweep"] in roles)
