"""A spec file read, with the command line's KEY=VALUE settings applied (`sweep run --set`)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .spec import SpecError, SweepSpec, parse_spec


def load_spec(path: str | os.PathLike, launch: bool = False, settings: Sequence[str] = (),
              **overrides: Any) -> SweepSpec:
    """Read and validate a spec file; ``overrides`` (name, storage) replace its keys, then each of
    ``settings`` (KEY=VALUE, see apply_setting) is applied; ``launch`` also checks the storage
    (writable, room for the checkpoints)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(["no such file"], f"spec {path}") from None
    except (OSError, yaml.YAMLError) as e:
        raise SpecError([f"not readable YAML: {' '.join(str(e).split())}"], f"spec {path}") from None
    if not isinstance(raw, dict):
        raise SpecError([f"expected a mapping of keys, got {type(raw).__name__}"], f"spec {path}")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    for setting in settings:
        raw = apply_setting(raw, setting)
    return parse_spec(raw, source=str(path) + "".join(f" --set {s}" for s in settings), launch=launch)


def apply_setting(raw: dict[str, Any], setting: str) -> dict[str, Any]:
    """``raw`` with one KEY=VALUE applied (`sweep run --set`): KEY dotted into the spec's mappings
    (train.epochs, resources.gpu, evaluate.points), VALUE read as YAML (5000, [0, 1, 2], true).
    The result is validated as a spec file would be; the file itself is not touched."""
    key, eq, text = setting.partition("=")
    parts = key.strip().split(".")
    if not eq or not all(parts):
        raise SpecError([f"--set {setting!r}: expected KEY=VALUE, e.g. train.epochs=5000 or 'seeds=[0,1]'"])
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError([f"--set {setting!r}: the value is not YAML: {' '.join(str(e).split())}"]) from None
    out = copy.deepcopy(raw)
    node = out
    for i, part in enumerate(parts[:-1]):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            where = ".".join(parts[: i + 1])
            raise SpecError([f"--set {setting!r}: {where} is {node!r}, not a mapping of keys"])
    node[parts[-1]] = value
    return out
