"""The spec reference in markdown, from the schema: `python -m sweep keys`, docs/reference.md."""

from __future__ import annotations

import dataclasses

from trainables import families
from trainables.config import TrialConfig
from trainables.settings import default_of

from .spec import OptunaStage, Resources, SweepSpec
from .tuneconfig import GRID_KEYS


def _default(f: dataclasses.Field) -> str:
    value = default_of(f)
    if value is dataclasses.MISSING:
        return "required"
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if value in ((), None, {}):
        return "`{}`" if value == {} else "-"
    return f"`{value}`"


def _table(cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> list[str]:
    rows = ["| key | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name not in skip:
            rows.append(f"| `{prefix}{f.name}` | {_default(f)} | {f.metadata['help']} |")
    return rows


def reference_markdown() -> str:
    """Every spec key, its default and meaning."""
    parts = ["Top-level keys:", "", *_table(SweepSpec), "",
             "`train` keys (also allowed under `family_train.FAMILY`, and as `grid` axes):", "",
             *_table(TrialConfig, "train.", (*GRID_KEYS, "eval_every", "family_options")), ""]
    for name, cls in families.FAMILIES.items():
        if dataclasses.fields(cls.Options):
            key = f"family_options.{name}"
            parts += [f"`{key}` keys:", "", *_table(cls.Options, f"{key}."), ""]
    parts += ["`resources` keys:", "", *_table(Resources, "resources."), "",
              "`optuna` keys:", "", *_table(OptunaStage, "optuna.")]
    return "\n".join(parts)
