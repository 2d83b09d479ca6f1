"""A trial's Tune config: what the spec's fan-out hands each trial, and how it reads back.

    {**train, "cell": Cell.tune() = {dataset, family, width, axes, settings, family_options},
     "seed": S (or "seeds": [S, ...] for a vectorized trial),
     "report_every", "checkpoint_every", "test_inference", "family_modules"}

Tune holds (and saves in each trial's params.json) the plain dict; ``Cell`` is its typed form.
Unknown keys are refused (Tune itself would ignore them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from trainables import families
from trainables.config import TrialConfig, sweep_keys

GRID_KEYS = sweep_keys("fanout")  # set by the fan-out, not by `train`: dataset, family, width, seed
ADAPTER_KEYS = ("cell", "seeds", "report_every", "checkpoint_every", "test_inference", "family_modules")


@dataclass(frozen=True)
class Cell:
    """One point of the fan-out: the trials of a cell differ in their seed alone."""

    dataset: str
    family: str
    width: int | None  # None for a family without an encoder
    axes: dict[str, Any]  # each `grid` axis -> this cell's value
    settings: dict[str, Any]  # family_train[family]: the family's overrides of `train`
    family_options: dict[str, Any]  # family_options[family]: the family's own settings

    @property
    def slug(self) -> str:
        """<dataset>-<family>[-k<width>][-<axis><value>...]: directory names and Optuna's keys."""
        width = f"-k{self.width}" if self.width else ""
        return f"{self.dataset}-{self.family}{width}" + "".join(f"-{k}{v}" for k, v in self.axes.items())

    def tune(self) -> dict[str, Any]:
        """The cell as the Tune config's "cell": a plain dict (copies of the mappings)."""
        return dataclasses.asdict(self)


def cell_slug(cell: Cell | dict[str, Any]) -> str:
    """The slug of a cell, typed or as a Tune config holds it."""
    return (cell if isinstance(cell, Cell) else Cell(**cell)).slug


def split_config(config: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
    """(engine config, adapter settings) from a Tune config; unknown keys raise ConfigError.

    A vectorized trial carries "seeds" (a list) instead of "seed"; its engine config has the first.
    """
    families.import_modules(config.get("family_modules", []))  # a user's family, on this worker
    engine = {k: v for k, v in config.items() if k not in ADAPTER_KEYS}
    if config.get("seeds"):
        engine["seed"] = config["seeds"][0]
    cell = Cell(**config["cell"])
    cfg = TrialConfig.from_dict({
        **engine, **cell.settings, **cell.axes, "eval_every": config["report_every"],
        "dataset": cell.dataset, "family": cell.family, "width": cell.width,
        "family_options": cell.family_options,
    })
    opts = {k: config[k] for k in ("report_every", "checkpoint_every", "test_inference")}
    return cfg, {**opts, "seeds": list(config["seeds"]) if config.get("seeds") else None}
