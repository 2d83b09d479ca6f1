"""One Tune trial's work, without Ray: its newest readable checkpoint, the fit that continues from
it (its seeds stepped separately, or stacked for vectorized seeds), the rows it replays on a
resume and the rows it reports as it trains. The trainable moves these rows and checkpoints
through ray.tune; the runner's `evaluate` and the fault harness read checkpoints through this
module too.

A restarted trial continues from the newest readable state among Tune's own checkpoint and the
checkpoints in its trial directory: a driver killed between a checkpoint's upload and its next
experiment-state snapshot would otherwise send it back to an older one, and a damaged newest
checkpoint falls back to the one before.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import torch

from trainables import checkpoint
from trainables.data import load_for
from trainables.fit import Fit, SeedRun, Separate
from trainables.metrics import INFERENCE
from trainables.vectorized import Stacked

from .tuneconfig import split_config

STATE_FILE = "trial.pt"
REPORT_FILE = "report.json"  # the row reported with the checkpoint, re-sent on resume


def checkpoint_dirs(fs: pafs.FileSystem, trial_path: str) -> list[tuple[pafs.FileSystem, str]]:
    """A trial directory's checkpoints, newest first."""
    infos = fs.get_file_info(pafs.FileSelector(trial_path, allow_not_found=True))
    paths = sorted((i.path for i in infos if i.base_name.startswith("checkpoint_")), reverse=True)
    return [(fs, p) for p in paths]


def newest_state(candidates, device: torch.device,
                 skip: int = 0) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(engine state, its report row) of the newest readable checkpoint, or with ``skip`` the one
    that many before it (by epoch), or (None, None)."""
    readable = []
    for fs, path in candidates:
        try:
            with fs.open_input_file(f"{path}/{STATE_FILE}") as f:
                state = checkpoint.load(io.BytesIO(f.read()), device, name=f"{path}/{STATE_FILE}")
            with fs.open_input_file(f"{path}/{REPORT_FILE}") as f:
                report = json.loads(f.read())
        except (OSError, ValueError) as e:
            print(f"checkpoint {path} unreadable, trying an older one: {e}", flush=True)
            continue
        readable.append((state["seeds"][0]["epoch"], state, report))
    readable.sort(key=lambda r: r[0], reverse=True)
    if len(readable) <= skip:
        return None, None
    _, state, row = readable[skip]
    return state, row


def checkpointed_trials(
    fs: pafs.FileSystem, path: str, config: dict[str, Any], device: torch.device, skip: int = 0
) -> list[SeedRun]:
    """A trial (its directory, its Tune config) as engine runs, one per seed, at its newest checkpoint
    (with ``skip``: the newest but ``skip``, by epoch)."""
    cfg, _ = split_config(config)
    state, _ = newest_state(checkpoint_dirs(fs, path), device, skip)
    if state is None:
        raise FileNotFoundError(f"{path}: no readable checkpoint")
    data = load_for(cfg, device)
    return [SeedRun.from_state(s, data, device) for s in state["seeds"]]


class TrialRun:
    """The engine's run of one Tune trial, fresh or from ``state``; ``opts`` as split_config gives."""

    def __init__(self, cfg, opts: dict[str, Any], data, device: torch.device, state: dict | None = None):
        self.cfg, self.opts, self.seeds = cfg, opts, opts["seeds"]
        optim = Separate if self.seeds is None else Stacked
        if state:
            self.run = Fit.from_state(state, data, device, optim)
        else:
            cfgs = [cfg] if self.seeds is None else [dataclasses.replace(cfg, seed=s) for s in self.seeds]
            self.run = Fit([SeedRun(c, data, device) for c in cfgs], optim)
        self.runs = self.run.runs

    def replay(self, last_row: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The rows a restored trial re-reports: the driver writes results as it gets them, and one
        killed mid-stream never wrote some; export keeps each epoch once."""
        if last_row is None:
            return []
        history = zip(*(r.history for r in self.runs), strict=True)
        every = self.opts["report_every"]
        return [self._row(list(per_seed)) for per_seed in history
                if per_seed[0]["epoch"] % every == 0 and per_seed[0]["epoch"] < self.run.epoch] + [last_row]

    def rows(self) -> Iterator[tuple[dict[str, Any], bool]]:
        """Train to the end: (row, whether a checkpoint is due) at every report epoch and the last."""
        for out in self.run.train():
            epoch, last = self.run.epoch, self.run.epoch == self.cfg.epochs
            if epoch % self.opts["report_every"] and not last:
                continue
            row = self._row(out)
            if last and self.opts["test_inference"] is not None:
                for prefix, run in zip(self._prefixes(), self.runs, strict=True):
                    q = run.infer_test(**self.opts["test_inference"])
                    row.update({f"{prefix}infer_seconds": q.seconds, f"{prefix}infer_steps": q.steps,
                                f"{prefix}infer_elbo_per_datapoint": q.elbo_per_datapoint})
            yield row, epoch % self.opts["checkpoint_every"] == 0 or last

    def save(self, directory: str | Path, row: dict[str, Any]) -> None:
        """A checkpoint's files: the full engine state, and the row reported with it."""
        self.run.save(Path(directory) / STATE_FILE)
        (Path(directory) / REPORT_FILE).write_text(json.dumps(row))

    def _prefixes(self) -> list[str]:
        return [f"seed{s}/" for s in self.seeds] if self.seeds else [""]

    def _row(self, per_seed: list[dict[str, Any]]) -> dict[str, Any]:
        """One report: the engine's metrics, the inference columns (set at the end), the threads. A
        vectorized trial's seeds go side by side as "seed<S>/<metric>" (export splits them back),
        with their mean -ELBO for the progress display."""
        rows = [{**m, **dict.fromkeys(INFERENCE)} for m in per_seed]
        if self.seeds is None:
            return {**rows[0], "torch_threads": torch.get_num_threads()}
        out = {"epoch": per_seed[0]["epoch"], "torch_threads": torch.get_num_threads(),
               "neg_elbo_per_datapoint": sum(m["neg_elbo_per_datapoint"] for m in per_seed) / len(per_seed)}
        for prefix, metrics in zip(self._prefixes(), rows, strict=True):
            out.update({prefix + k: v for k, v in metrics.items()})
        return out
