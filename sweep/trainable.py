"""The Ray Tune function trainable: a thin adapter from a Tune config to the engine.

Tune config = the spec's `train` settings + {"cell": {dataset, family, width[, lr]}, "seed",
"report_every", "checkpoint_every", "test_inference"}. Unknown keys are refused (Tune itself
would ignore them). Metrics go out with ``tune.report`` every ``report_every`` epochs; the
engine's full state rides along as a checkpoint every ``checkpoint_every`` epochs and at the end.

A restarted trial continues from the newest readable state among ``tune.get_checkpoint()`` and
the checkpoints in its own trial directory: a driver killed between a checkpoint's upload and
its next experiment-state snapshot would otherwise send the trial back to an older one, and a
damaged newest checkpoint falls back to the one before it.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from trainables import Trial, load
from trainables.fit import load_state

from .spec import split_config

STATE_FILE = "trial.pt"
REPORT_FILE = "report.json"  # the row reported with the checkpoint, re-sent on resume
INFER_KEYS = ("infer_seconds", "infer_steps", "infer_elbo_per_datapoint")


def _device_and_threads() -> torch.device:
    """cuda when Tune gave this trial a GPU; else CPU with as many torch threads as its CPUs."""
    if ray.get_gpu_ids():
        return torch.device("cuda")
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return torch.device("cpu")


def _candidates() -> list[tuple[pafs.FileSystem, str]]:
    """Checkpoint directories to resume from, Tune's own first, then this trial's, newest first."""
    out = []
    checkpoint = tune.get_checkpoint()
    if checkpoint:
        out.append((checkpoint.filesystem, checkpoint.path))
    storage = tune.get_context().get_storage()
    fs, trial_path = storage.storage_filesystem, storage.trial_fs_path
    infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    names = sorted((i.path for i in infos if i.base_name.startswith("checkpoint_")), reverse=True)
    return out + [(fs, p) for p in names]


def _latest_state(device: torch.device) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(engine state, its report row) of the newest readable checkpoint, or (None, None)."""
    best, row = None, None
    for fs, path in _candidates():
        try:
            with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
                state = load_state(io.BytesIO(f.read()), device, name=f"{path}/{STATE_FILE}")
            with fs.open_input_file(f"{path}/{REPORT_FILE}") as f:
                report = json.loads(f.read())
        except (OSError, ValueError) as e:
            print(f"checkpoint {path} unreadable, trying an older one: {e}", flush=True)
            continue
        if best is None or state["epoch"] > best["epoch"]:
            best, row = state, report
    return best, row


def train_trial(config: dict[str, Any]) -> None:
    cfg, opts = split_config(config)
    device = _device_and_threads()
    data = load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.data_root, device)  # once, on this node
    state, last_row = _latest_state(device)
    if state is None:
        trial = Trial(cfg, data, device)
    else:
        trial = Trial.from_state(state, data, device)
        print(f"resuming from epoch {trial.epoch}", flush=True)
        # The driver writes results as it gets them; one killed mid-stream never wrote some.
        # Replaying the checkpoint's history makes the log whole (export keeps each epoch once).
        for metrics in trial.history:
            if metrics["epoch"] % opts["report_every"] == 0 and metrics["epoch"] < trial.epoch:
                tune.report({**metrics, **dict.fromkeys(INFER_KEYS)})
        tune.report(last_row)
        if trial.epoch >= cfg.epochs:
            return
    for metrics in trial.train():
        last = trial.epoch == cfg.epochs
        if trial.epoch % opts["report_every"] and not last:
            continue
        row = {**metrics, **dict.fromkeys(INFER_KEYS)}  # same columns in every report
        if last and opts["test_inference"] is not None:
            q = trial.infer_test(**opts["test_inference"])
            row.update(infer_seconds=q.seconds, infer_steps=q.steps,
                       infer_elbo_per_datapoint=q.elbo_per_datapoint)
        if trial.epoch % opts["checkpoint_every"] == 0 or last:
            with tempfile.TemporaryDirectory() as d:
                trial.save(Path(d) / STATE_FILE)
                (Path(d) / REPORT_FILE).write_text(json.dumps(row))
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(row)
