"""One trial's settings: a frozen dataclass, strict on unknown keys and bad values.

Defaults are the paper's setup (Margossian & Blei 2024, section 4.4; see SPEC.md).
Each field's ``help`` is what the command line and the README show.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("mnist", "fashion_mnist", "cifar10")
FAMILIES = ("amortized", "factorized", "constant")
THETA_INITS = ("paper", "torch")
LR_SCHEDULES = ("constant", "step3")


class ConfigError(ValueError):
    """A setting is unknown or out of range; the message names every problem at once."""


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrialConfig:
    # data
    dataset: str = _f("fashion_mnist", "one of mnist, fashion_mnist, cifar10")
    n_train: int = _f(10_000, "the first n_train training images are the data (N)")
    n_test: int = _f(10_000, "the first n_test test images measure test MSE")
    data_root: str | None = _f(
        None, "torchvision-layout folder with the dataset; unset: Debian's files, then download"
    )
    # variational family for z
    family: str = _f("amortized", "q(z_n): amortized (encoder), factorized (per-point), constant")
    width: int | None = _f(None, "encoder hidden width k; amortized only (required there)")
    # model (SPEC.md, 'The model')
    latent_dim: int = _f(64, "dimension d of each latent z_n")
    hidden_dim: int = _f(256, "decoder hidden width H")
    slope: float = _f(0.2, "LeakyReLU negative slope of decoder and encoder; 1.0 = linear")
    sigma_x: float = _f(0.7071, "likelihood sd; the paper's code used variance 1/2 (0.7071)")
    sigma_theta: float = _f(1.0, "prior sd of every decoder weight and bias")
    theta_init: str = _f(
        "paper", "q(theta) start: paper (mean 0, log-sd -2) or torch (nn.Linear means, log-sd -6)"
    )
    # objective
    mc_samples: int = _f(1, "Monte Carlo samples S per ELBO estimate")
    # optimization
    epochs: int = _f(5_000, "passes over the n_train images")
    batch_size: int = _f(1_000, "minibatch size B")
    lr: float = _f(1e-3, "Adam learning rate")
    lr_schedule: str = _f("constant", "constant, or step3: learning rate x0.1 at each third")
    seed: int = _f(0, "seeds parameter init, shuffling and Monte Carlo noise")
    eval_every: int = _f(1, "compute train/test MSE every this many epochs (and the last)")
    mse_threshold: float = _f(0.03, "train MSE whose first crossing is timed (epochs, seconds)")

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

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


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(TrialConfig))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _problems(c: TrialConfig) -> list[str]:
    out = []
    for name, choices in (
        ("dataset", DATASETS),
        ("family", FAMILIES),
        ("theta_init", THETA_INITS),
        ("lr_schedule", LR_SCHEDULES),
    ):
        if getattr(c, name) not in choices:
            out.append(f"{name}={getattr(c, name)!r} is not one of {', '.join(choices)}")
    for name in (
        "n_train", "n_test", "latent_dim", "hidden_dim", "mc_samples", "epochs", "batch_size",
        "eval_every",
    ):
        v = getattr(c, name)
        if not _is_int(v) or v <= 0:
            out.append(f"{name}={v!r} must be a positive integer")
    for name in ("sigma_x", "sigma_theta", "lr", "mse_threshold"):
        v = getattr(c, name)
        if not _is_num(v) or not v > 0 or v == float("inf"):
            out.append(f"{name}={v!r} must be a positive finite number")
    if not _is_num(c.slope) or not 0 <= c.slope <= 1:
        out.append(f"slope={c.slope!r} must be a number in [0, 1]")
    if not _is_int(c.seed) or c.seed < 0:
        out.append(f"seed={c.seed!r} must be a non-negative integer")
    if c.family == "amortized":
        if not _is_int(c.width) or c.width <= 0:
            out.append(f"width={c.width!r} must be a positive integer for family 'amortized'")
    elif c.width is not None:
        out.append(f"width={c.width!r} applies only to family 'amortized', not {c.family!r}")
    if _is_int(c.batch_size) and _is_int(c.n_train) and c.batch_size > c.n_train > 0:
        out.append(f"batch_size={c.batch_size} exceeds n_train={c.n_train}")
    if c.data_root is not None and not isinstance(c.data_root, str):
        out.append(f"data_root={c.data_root!r} must be a path string or unset")
    return out
