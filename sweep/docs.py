"""The spec reference in markdown, from the schema: `python -m sweep keys`, docs/reference.md.

Everything is read at call time: the dataclass fields' defaults and help, the family registry
(a family a user's module registered included), and the signatures of ``infer`` and
``evaluate_trial``, whose keyword parameters are the `test_inference` and `evaluate` keys.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from trainables import families
from trainables.config import TrialConfig
from trainables.gap import evaluate_trial
from trainables.inference import infer, optimize_local_q
from trainables.settings import default_of

from .rules import (
    EVALUATE_HELP,
    EVALUATE_OWN,
    EVALUATE_SKIP,
    INFER_HELP,
    INFER_SKIP,
    QSTAR_HELP,
    TRACKER_HELP,
    TRACKERS,
    TRAIN_KEYS,
)
from .spec import OptunaStage, Resources, SweepSpec

HEADER = ["| key | default | meaning |", "|---|---|---|"]


def shown(value: Any) -> str:
    """A default as a spec would write it: `-` for none, tuples as lists."""
    if value is dataclasses.MISSING or value is inspect.Parameter.empty:
        return "required"
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, tuple):
        value = list(value)
    if value == {}:
        return "`{}`"
    if value in ([], None):
        return "-"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _table(cls: type, prefix: str = "", only: tuple[str, ...] | None = None) -> list[str]:
    rows = list(HEADER)
    for f in dataclasses.fields(cls):
        if only is None or f.name in only:
            rows.append(f"| `{prefix}{f.name}` | {shown(default_of(f))} | {f.metadata['help']} |")
    return rows


def keyword_defaults(func: Callable, skip: int) -> dict[str, Any]:
    """``func``'s parameters after the first ``skip``, with their defaults: the keys a spec mapping of
    its settings accepts (as ``settings.keyword_settings`` reads them)."""
    return {n: p.default for n, p in list(inspect.signature(func).parameters.items())[skip:]}


def _keyword_table(prefix: str, defaults: dict[str, Any], meanings: dict[str, str]) -> list[str]:
    return [*HEADER, *(f"| `{prefix}{k}` | {shown(v)} | {meanings.get(k, '')} |"
                       for k, v in defaults.items())]


def family_summary(cls: type) -> str:
    """What the family's q is: the first paragraph of its class docstring."""
    doc = inspect.getdoc(cls) or ""
    return _cell(doc.split("\n\n")[0]) or "-"


def registered() -> list[tuple[str, type]]:
    """(name, class) of every family registered now, in display order."""
    return sorted(families.FAMILIES.items(), key=lambda kv: kv[1].order)


def families_table() -> list[str]:
    """Every registered family: what it is, whether `widths` fan out over it, and its own settings
    (`family_options.NAME`) with their defaults."""
    rows = ["| family | what q is | encoder width k | options (default) |", "|---|---|---|---|"]
    for name, cls in registered():
        opts = ", ".join(f"`{f.name}` ({shown(default_of(f))})" for f in dataclasses.fields(cls.Options))
        rows.append(f"| `{name}` | {family_summary(cls)} | {'yes' if cls.has_width else 'no'} | "
                    f"{opts or 'no options'} |")
    return rows


def tracking_table() -> list[str]:
    rows = list(HEADER)
    for tracker in TRACKERS:
        for key, (default, meaning) in TRACKER_HELP[tracker].items():
            rows.append(f"| `tracking.{tracker}.{key}` | {shown(default)} | {meaning} |")
    return rows


def reference_markdown() -> str:
    """Every spec key, its default and meaning."""
    test_inference = keyword_defaults(infer, INFER_SKIP)
    evaluate = keyword_defaults(evaluate_trial, EVALUATE_SKIP) | EVALUATE_OWN
    qstar = {k: v for k, v in keyword_defaults(optimize_local_q, 0).items() if k in QSTAR_HELP}
    parts = ["Top-level keys:", "", *_table(SweepSpec), "",
             "`families`: every registered family (`family_options.NAME` below: each one's settings):", "",
             *families_table(), "",
             "`train` keys (also allowed under `family_train.FAMILY`, and as `grid` axes):", "",
             *_table(TrialConfig, "train.", TRAIN_KEYS), ""]
    for name, cls in registered():
        if dataclasses.fields(cls.Options):
            key = f"family_options.{name}"
            parts += [f"`{key}` keys:", "", *_table(cls.Options, f"{key}."), ""]
    parts += ["`resources` keys:", "", *_table(Resources, "resources."), "",
              "`optuna` keys:", "", *_table(OptunaStage, "optuna."), "",
              "`test_inference` keys (the parameters of `trainables.inference.infer`):", "",
              *_keyword_table("test_inference.", test_inference, INFER_HELP), "",
              "`evaluate` keys (the parameters of `trainables.gap.evaluate_trial`):", "",
              *_keyword_table("evaluate.", evaluate, EVALUATE_HELP), "",
              "`evaluate.qstar` keys (the settings of `trainables.inference.optimize_local_q`):", "",
              *_keyword_table("evaluate.qstar.", qstar, QSTAR_HELP), "",
              "`tracking` keys (NAME: the spec's `name`; STORAGE: its `storage`):", "",
              *tracking_table()]
    return "\n".join(parts)
