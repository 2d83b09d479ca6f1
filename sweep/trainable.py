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

import dataclasses
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from trainables import Trial
from trainables.data import load_for
from trainables.fit import load_state
from trainables.metrics import INFERENCE
from trainables.vectorized import SeedBatch

from .tuneconfig import split_config

STATE_FILE = "trial.pt"
REPORT_FILE = "report.json"  # the row reported with the checkpoint, re-sent on resume


def _device_and_threads() -> torch.device:
    """cuda when Tune gave this trial a GPU; else CPU with as many torch threads as its CPUs."""
    if ray.get_gpu_ids():
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls, as in trainables' CLI
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
    return out + checkpoint_dirs(storage.storage_filesystem, storage.trial_fs_path)


def checkpoint_dirs(fs: pafs.FileSystem, trial_path: str) -> list[tuple[pafs.FileSystem, str]]:
    """A trial directory's checkpoints, newest first."""
    infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    paths = sorted((i.path for i in infos if i.base_name.startswith("checkpoint_")), reverse=True)
    return [(fs, p) for p in paths]


def newest_state(candidates, device: torch.device) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(engine state, its report row) of the newest readable checkpoint, or (None, None)."""
    best, row = None, None
    for fs, path in candidates:
        try:
            with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
                state = load_state(io.BytesIO(f.read()), device, name=f"{path}/{STATE_FILE}")
            with fs.open_input_file(f"{path}/{REPORT_FILE}") as f:
                report = json.loads(f.read())
        except (OSError, ValueError) as e:
            print(f"checkpoint {path} unreadable, trying an older one: {e}", flush=True)
            continue
        epoch = state["seed_states"][0]["epoch"] if "seed_states" in state else state["epoch"]
        if best is None or epoch > best[0]:
            best, row = (epoch, state), report
    return (best[1] if best else None), row


def _row(metrics: dict[str, Any]) -> dict[str, Any]:
    """A report: the engine's metrics, the inference columns (set at the end), the thread count."""
    return {**metrics, **dict.fromkeys(INFERENCE), "torch_threads": torch.get_num_threads()}


def _report_row(per_seed: list[dict[str, Any]], seeds: list[int] | None) -> dict[str, Any]:
    """One trial's report. A vectorized trial's seeds go side by side as "seed<S>/<metric>"
    (export turns them back into one row per seed), with their mean -ELBO for the progress table."""
    if seeds is None:
        return _row(per_seed[0])
    row = {
        "epoch": per_seed[0]["epoch"],
        "neg_elbo_per_datapoint": sum(m["neg_elbo_per_datapoint"] for m in per_seed) / len(per_seed),
        "torch_threads": torch.get_num_threads(),
    }
    for seed, metrics in zip(seeds, per_seed, strict=True):
        row.update({f"seed{seed}/{k}": v for k, v in _row(metrics).items() if k != "torch_threads"})
    return row


def _start(cfg, opts, data, device):
    """The run (a Trial, or a SeedBatch for a vectorized trial), fresh or from its newest checkpoint."""
    state, last_row = newest_state(_candidates(), device)
    if opts["seeds"] is None:
        run = Trial.from_state(state, data, device) if state else Trial(cfg, data, device)
        return run, [run], [[m] for m in run.history], last_row
    cfgs = [dataclasses.replace(cfg, seed=s) for s in opts["seeds"]]
    run = SeedBatch.from_state(state, data, device) if state else SeedBatch(cfgs, data, device)
    return run, run.trials, run.history, last_row


def train_trial(config: dict[str, Any]) -> None:
    cfg, opts = split_config(config)
    device = _device_and_threads()
    data = load_for(cfg, device)  # once, on this node
    run, trials, history, last_row = _start(cfg, opts, data, device)
    seeds = opts["seeds"]
    if last_row is not None:
        print(f"resuming from epoch {run.epoch}", flush=True)
        # The driver writes results as it gets them; one killed mid-stream never wrote some.
        # Replaying the checkpoint's history makes the log whole (export keeps each epoch once).
        for per_seed in history:
            epoch = per_seed[0]["epoch"]
            if epoch % opts["report_every"] == 0 and epoch < run.epoch:
                tune.report(_report_row(per_seed, seeds))
        tune.report(last_row)
        if run.epoch >= cfg.epochs:
            return
    prefixes = [f"seed{s}/" for s in seeds] if seeds else [""]
    for out in run.train():
        last = run.epoch == cfg.epochs
        if run.epoch % opts["report_every"] and not last:
            continue
        row = _report_row(out if seeds else [out], seeds)
        if last and opts["test_inference"] is not None:
            for prefix, trial in zip(prefixes, trials, strict=True):
                q = trial.infer_test(**opts["test_inference"])
                row.update({f"{prefix}infer_seconds": q.seconds, f"{prefix}infer_steps": q.steps,
                            f"{prefix}infer_elbo_per_datapoint": q.elbo_per_datapoint})
        if run.epoch % opts["checkpoint_every"] == 0 or last:
            with tempfile.TemporaryDirectory() as d:
                run.save(Path(d) / STATE_FILE)
                (Path(d) / REPORT_FILE).write_text(json.dumps(row))
                tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
        else:
            tune.report(row)
