"""A trial's Tune config: what the spec's fan-out hands each trial, and how it reads back.

    {**train, "cell": {dataset, family, width, axes, settings, family_options},
     "seed": S (or "seeds": [S, ...] for a vectorized trial),
     "report_every", "checkpoint_every", "test_inference", "family_modules"}

Unknown keys are refused (Tune itself would ignore them).
"""

from __future__ import annotations

from typing import Any

from trainables import families
from trainables.config import TrialConfig

GRID_KEYS = ("dataset", "family", "width", "seed")  # set by the fan-out, not by `train`
ADAPTER_KEYS = ("cell", "seeds", "report_every", "checkpoint_every", "test_inference", "family_modules")


def cell_slug(cell: dict[str, Any]) -> str:
    """<dataset>-<family>[-k<width>][-<axis><value>...]: directory names and Optuna's keys."""
    width = f"-k{cell['width']}" if cell.get("width") else ""
    return f"{cell['dataset']}-{cell['family']}{width}" + "".join(f"-{k}{v}" for k, v in cell["axes"].items())


def split_config(config: dict[str, Any]) -> tuple[TrialConfig, dict[str, Any]]:
    """(engine config, adapter settings) from a Tune config; unknown keys raise ConfigError.

    A vectorized trial carries "seeds" (a list) instead of "seed"; its engine config has the first.
    """
    families.import_modules(config.get("family_modules", []))  # a user's family, on this worker
    engine = {k: v for k, v in config.items() if k not in ADAPTER_KEYS}
    if config.get("seeds"):
        engine["seed"] = config["seeds"][0]
    cell = config["cell"]
    cfg = TrialConfig.from_dict({
        **engine, **cell["settings"], **cell["axes"], "eval_every": config["report_every"],
        **{k: cell[k] for k in ("dataset", "family", "width", "family_options")},
    })
    opts = {k: config[k] for k in ("report_every", "checkpoint_every", "test_inference")}
    return cfg, {**opts, "seeds": list(config["seeds"]) if config.get("seeds") else None}
