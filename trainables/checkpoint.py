"""A fit's saved state: its format, its version, written atomically, read back with older versions
brought up to date.

    {"version": 3,
     "seeds": [one SeedRun.state_dict() per seed: config, decoder, family, generator, epoch,
               history, opt_seconds, eval_seconds, threshold],
     "optimizers": [torch optimizer state dicts], "schedulers": [their schedules' state dicts]}

A version 2 file holds the same parts laid out otherwise, a lone trial's seed keys at the top
level and a vectorized batch's seeds under "seed_states"; ``load`` reads it as version 3.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Any

import torch

VERSION = 3


def state(seeds: list[dict[str, Any]], optimizers: list[dict], schedulers: list[dict]) -> dict[str, Any]:
    """The state of a fit: its seeds' own states, its optimizers' and its schedules'."""
    return {"version": VERSION, "seeds": seeds, "optimizers": optimizers, "schedulers": schedulers}


def save(state: dict[str, Any], path: str | os.PathLike) -> None:
    """Write a state atomically: a crash mid-write leaves the old file whole."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(
    path: str | os.PathLike | typing.BinaryIO, device: str | torch.device = "cpu", name: str | None = None
) -> dict[str, Any]:
    """A state written by ``save``, from a path or an open binary file, as the current version."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which, not a pickle traceback
        raise ValueError(f"cannot read trial state {name or path}: {type(e).__name__}: {e}") from None
    if not isinstance(state, dict) or state.get("version") not in (2, VERSION):
        raise ValueError(f"cannot read trial state {name or path}: not a version 2 or {VERSION} state")
    return _from_version_2(state) if state["version"] == 2 else state


def _from_version_2(old: dict[str, Any]) -> dict[str, Any]:
    """A version 2 state (a lone trial's, or a batch's "seed_states") in the format of version 3."""
    drop = {"version", "optimizers", "schedulers"}
    seeds = [{k: v for k, v in s.items() if k not in drop} for s in old.get("seed_states", [old])]
    return state(seeds, old["optimizers"], old["schedulers"])
