"""Every place the sweep reaches into Ray Tune's private state, in one small module.

Two things have no public API in Ray 2.60: repairing a restored experiment's references to
checkpoints the storage lost (`resume`), and replacing a restored Tuner's callbacks (the display).
Both lean on names Tune may rename in any release, so pyproject.toml caps Ray at the versions the
tests ran, and `shape_problems()` (run by tests/test_tune_internals.py) names what moved, with the
Ray version, before a user's resume meets it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ray

TESTED = "2.60"  # the Ray minor version these touches were written against (pyproject's cap)


def drop_missing_checkpoints(trial_state: str, exists: Callable[[str], bool]) -> tuple[str, int]:
    """One trial's JSON state (an experiment state's `trial_data` entry) without the checkpoints
    ``exists(path)`` denies; returns (new state, how many were dropped)."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata  # the state's own (de)serializer

    meta = _TrainingRunMetadata.from_json_state(trial_state)
    manager = meta.checkpoint_manager
    if manager is None:
        return trial_state, 0
    kept = [r for r in manager._checkpoint_results if exists(r.checkpoint.path)]
    dropped = len(manager._checkpoint_results) - len(kept)
    latest = manager._latest_checkpoint_result
    if latest is not None and not exists(latest.checkpoint.path):
        manager._latest_checkpoint_result = kept[-1] if kept else None
        dropped += 1
    manager._checkpoint_results = kept
    meta.invalidate_cache()
    return meta.get_json_state(), dropped


def restored_run_config(tuner: Any) -> Any | None:
    """The run config a restored Tuner will run with (its callbacks and verbosity can be replaced
    there: Tune restores the ones the sweep began with), or None where this Ray has no such object."""
    return getattr(getattr(tuner, "_local_tuner", None), "get_run_config", lambda: None)()


def shape_problems() -> list[str]:
    """What of the private state above this Ray lacks; [] when every touch still fits. Builds a
    trial's metadata with a checkpoint manager and round-trips it through drop_missing_checkpoints."""
    from ray.train._internal.checkpoint_manager import _CheckpointManager
    from ray.tune import CheckpointConfig, Tuner
    from ray.tune.impl.tuner_internal import TunerInternal
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    out = []
    if "_local_tuner" not in getattr(Tuner, "__annotations__", {}):
        out.append("Tuner._local_tuner")
    if not hasattr(TunerInternal, "get_run_config"):
        out.append("TunerInternal.get_run_config")
    meta = _TrainingRunMetadata()
    meta.checkpoint_manager = _CheckpointManager(CheckpointConfig(num_to_keep=2))
    out += [f"_CheckpointManager.{n}" for n in ("_checkpoint_results", "_latest_checkpoint_result")
            if not hasattr(meta.checkpoint_manager, n)]
    try:
        drop_missing_checkpoints(meta.get_json_state(), lambda path: True)
    except Exception as e:  # any break in the round trip is the news
        out.append(f"the trial-state round trip ({type(e).__name__}: {e})")
    return [f"Ray {ray.__version__} (the sweep was tested on {TESTED}) lacks {what}" for what in out]
