"""Every place the sweep reaches into Ray's private state, in one small module.

Five things have no public API in Ray 2.60: repairing a restored experiment's references to
checkpoints the storage lost (`resume`), replacing a restored Tuner's callbacks (the display),
reading the trials of an experiment-state snapshot fast (`status`, `export`: Tune's own
ExperimentAnalysis unpickles each trial's storage and checkpoint objects, tens of milliseconds a
trial, minutes at 10,000 trials, where the few plain JSON fields the sweep needs take well under a
millisecond), what the autoscaler says it is doing (a waiting sweep's note on a cluster), and
muting the autoscaler's repeated events in the driver (the note replaces them). All lean on names
Ray may rename in any release, so pyproject.toml caps Ray at the versions the tests ran, and
`shape_problems()` (run by tests/test_tune_internals.py) names what moved, with the Ray version,
before a user's resume or status meets it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class SnapshotTrial:
    """One trial's plain fields in an experiment-state snapshot."""

    trial_id: str
    status: str
    config: dict[str, Any]
    dirname: str | None  # the trial's directory, under the experiment's (None before Tune names it)
    num_failures: int
    last_result: dict[str, Any]  # {} before its first report
    error_filename: str | None  # its error file, in its directory, once it failed


METADATA_FIELDS = ("num_failures", "last_result", "error_filename")
_DECODER = json.JSONDecoder()


def _fields(text: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """Top-level ``keys`` of the JSON object ``text``, each value decoded where it stands: a trial's
    run metadata is mostly Tune's per-metric statistics and pickled checkpoint records, five times
    the rest, and none of that is read here. A quoted key and its colon occur in JSON text only as a
    key (inside a string the quotes are escaped), and Tune writes these first, before any nested
    object; where one is missing, the whole object is decoded (and a KeyError names it)."""
    out = {}
    for key in keys:
        at = text.find(f'"{key}": ')
        if at < 0:
            whole = json.loads(text)
            return {k: whole[k] for k in keys}
        out[key] = _DECODER.raw_decode(text, at + len(key) + 4)[0]
    return out


def trial_records(snapshot: bytes | str) -> list[SnapshotTrial]:
    """The trials of an experiment-state snapshot (experiment_state-*.json), each as the plain
    fields the sweep reads. Plain JSON, nothing unpickled; a config Tune had to pickle (a value
    JSON cannot hold) is decoded as Tune decodes it."""
    out = []
    for state_json, metadata_json in json.loads(snapshot)["trial_data"]:
        state, meta = json.loads(state_json), _fields(metadata_json, METADATA_FIELDS)
        config = state["config"]
        if isinstance(config, dict) and config.get("_type") == "CLOUDPICKLE_FALLBACK":
            from ray.tune.utils.serialization import _loads_with_cloudpickle  # Tune's own state

            config = _loads_with_cloudpickle(json.dumps(config))
        out.append(SnapshotTrial(state["trial_id"], state["status"], config, state["relative_logdir"],
                                 meta["num_failures"], meta["last_result"] or {}, meta["error_filename"]))
    return out


def restored_run_config(tuner: Any) -> Any | None:
    """The run config a restored Tuner will run with (its callbacks and verbosity can be replaced
    there: Tune restores the ones the sweep began with), or None where this Ray has no such object."""
    return getattr(getattr(tuner, "_local_tuner", None), "get_run_config", lambda: None)()


def autoscaler_status() -> dict[str, Any] | None:
    """What the cluster's autoscaler reports: {"pending": nodes it is starting, "node_types": {type:
    resources of one node} where it says}; None where no autoscaler can add nodes (a plain `ray start`
    cluster or a local Ray, whose monitor runs a read-only provider with one "type" per node)."""
    from ray._private import ray_constants
    from ray._private.state import state
    from ray.autoscaler._private.util import format_readonly_node_type
    from ray.experimental.internal_kv import _internal_kv_get

    config = state.get_cluster_config()  # autoscaler v2 (KubeRay) publishes its node groups here
    if config is not None and config.node_group_configs:
        types = {g.name: dict(g.resources) for g in config.node_group_configs if g.max_count != 0}
        return {"pending": 0, "node_types": types}
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    report = json.loads(raw).get("autoscaler_report") if raw else None
    mapping = (report or {}).get("node_type_mapping") or {}
    if not report or all(kind == format_readonly_node_type(node) for node, kind in mapping.items()):
        return None
    pending = sum(report.get("pending_launches", {}).values()) + len(report.get("pending_nodes", []))
    return {"pending": pending, "node_types": None}  # v1 keeps its node types in the head's config


def mute_autoscaler_events() -> None:
    """No "(autoscaler +35s) No available node types can fulfill..." lines in this driver, every
    30 s: Ray reads the switch (RAY_SCHEDULER_EVENTS) once, at import, before the sweep can set it."""
    from ray._private import ray_constants

    ray_constants.AUTOSCALER_EVENTS = 0


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
    try:  # a trial as Tune snapshots it, read back as trial_records reads it
        from ray.tune.experiment import Trial

        trial = Trial("train_trial", config={"seed": 3}, trial_id="t0", stub=True)
        trial.run_metadata.last_result = {"epoch": 2}
        record = trial_records(json.dumps({"trial_data": [trial.get_json_state()]}))[0]
        want = {"trial_id": "t0", "status": Trial.PENDING, "config": {"seed": 3},
                "num_failures": 0, "last_result": {"epoch": 2}, "error_filename": None}
        if {k: getattr(record, k) for k in want} != want or not isinstance(record.dirname, str | None):
            out.append(f"a trial's snapshot fields as trial_records reads them (got {record})")
    except Exception as e:
        out.append(f"a trial's snapshot fields as trial_records reads them ({type(e).__name__}: {e})")
    try:
        from ray._private import ray_constants
        from ray._private.state import state
        from ray.autoscaler._private.util import format_readonly_node_type
        from ray.experimental.internal_kv import _internal_kv_get  # noqa: F401

        for name in ("AUTOSCALER_EVENTS", "DEBUG_AUTOSCALING_STATUS"):
            if not hasattr(ray_constants, name):
                out.append(f"ray_constants.{name}")
        if not callable(getattr(state, "get_cluster_config", None)) or not format_readonly_node_type("x"):
            out.append("GlobalState.get_cluster_config or format_readonly_node_type")
    except ImportError as e:
        out.append(f"the autoscaler's status ({e})")
    import ray  # here, not at the top: status and export import this module without Ray

    return [f"Ray {ray.__version__} (the sweep was tested on {TESTED}) lacks {what}" for what in out]
