"""The Ray Tune function trainable: config in, ``tune.report`` out (sweep/trialrun.py does the rest).

Metrics go out every ``report_every`` epochs; the engine's full state rides along as a checkpoint
every ``checkpoint_every`` epochs and at the end. A restarted trial continues from the newest
readable checkpoint, Tune's or one in its own directory, and first re-reports its history.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import ray
import torch
from ray import tune

from trainables.data import load_for

from .trialrun import TrialRun, checkpoint_dirs, newest_state
from .tuneconfig import split_config

RAY_LOGGERS = ("ray.tune", "ray.train")  # one INFO line per checkpoint and more; quiet unless asked
RAY_LOGS_ENV = "AMORTIZATION_GAP_RAY_LOGS"  # set (by `--verbose`) in the workers: Ray's own output


def task_device() -> torch.device:
    """cuda when Ray gave this task a GPU. A GPU Ray assigned that torch cannot see is an error:
    a GPU node with a broken driver must not burn its hours on the CPU."""
    gpus = ray.get_gpu_ids()
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"Ray gave this task GPU {gpus} but torch sees no CUDA device (no driver?)")
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 matmuls, as in trainables' CLI
    return torch.device("cuda")


def _device_and_threads() -> torch.device:
    """task_device(); on CPU, as many torch threads as the trial's CPUs."""
    if (device := task_device()).type == "cuda":
        return device
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    return torch.device("cpu")


def _checkpoints() -> list:
    """Where a restarted trial may resume from: Tune's checkpoint, then its own directory's."""
    storage, given = tune.get_context().get_storage(), tune.get_checkpoint()
    ours = checkpoint_dirs(storage.storage_filesystem, storage.trial_fs_path)
    return ([(given.filesystem, given.path)] if given else []) + ours


def train_trial(config: dict[str, Any]) -> None:
    if not os.environ.get(RAY_LOGS_ENV):  # no "Checkpoint successfully created" per checkpoint
        for name in RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    cfg, opts = split_config(config)
    device = _device_and_threads()
    state, last_row = newest_state(_checkpoints(), device)
    run = TrialRun(cfg, opts, load_for(cfg, device), device, state)  # data: once, on this node
    if state is not None:
        print(f"resuming from epoch {run.run.epoch}", flush=True)
    for row in run.replay(last_row):
        tune.report(row)
    for row, checkpoint_due in run.rows():
        if not checkpoint_due:
            tune.report(row)
            continue
        with tempfile.TemporaryDirectory() as d:
            run.save(d, row)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(d))
