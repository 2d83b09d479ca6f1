"""The sweep's progress display (sweep/progress.py), fed from Ray Tune's events as a Tune callback."""

from __future__ import annotations

import time
from typing import Any

import ray
from ray import tune

from . import capacity
from .progress import Line, Progress
from .tune_internals import autoscaler_status
from .tuneconfig import split_config


class SweepDisplay(tune.Callback):
    """The sweep's progress display fed from Tune's events. A callback, not a progress_reporter:
    Tune's default output engine ignores custom reporters (unless RAY_AIR_NEW_OUTPUT=0), while
    callbacks run under either engine."""

    WAIT_S = 20.0  # no trial running this long, some waiting: say what they wait for (then every 30 s)

    def __init__(self, axes: list[str], asked: dict[str, float] | None = None):
        self.progress = Progress(axes)
        self.asked = asked or {}  # one trial's resources, as Ray names them
        self._idle_since: float | None = None  # when the sweep last had no trial running
        self._noted = 0.0
        self._mse: dict[str, float] = {}  # the last train MSE each trial reported
        self._epochs: dict[str, int] = {}  # each trial's configured epochs, read from its config once
        self._seen = 0  # trials the display has a line for: Tune appends new ones to its list

    def _update(self, trial: Any, result: dict | None = None, state: str | None = None) -> None:
        c, last = trial.config, (result if result is not None else trial.last_result) or {}
        cell, key = c["cell"], trial.trial_id
        mses = [v for k, v in last.items() if k.endswith("train_mse") and v is not None]
        if mses:
            self._mse[key] = sum(mses) / len(mses)
        if key not in self._epochs:
            self._epochs[key] = split_config(c)[0].epochs
        seeds = c.get("seeds") or [c.get("seed")]
        self.progress.update(key, Line(
            cell["dataset"], cell["family"], cell["width"], cell["axes"], ",".join(map(str, seeds)),
            state or trial.status, last.get("epoch", 0), self._epochs[key],
            last.get("neg_elbo_per_datapoint"), self._mse.get(key), last.get("time_total_s", 0.0),
        ))

    # Each event updates the one trial it is about: a step of Tune's loop touches no other trial,
    # so a sweep of thousands costs the display the same per trial as one of ten.
    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        for trial in trials[self._seen :]:  # new ones, PENDING
            self._update(trial)
        self._seen = len(trials)
        self._note_waiting(trials)
        self.progress.show()

    def _note_waiting(self, trials: list) -> None:
        """While every trial waits, what no node offers (and whether an autoscaler is bringing it),
        in place of Ray's warnings every 30 to 60 s; cleared as soon as a trial runs."""
        states = {t.status for t in trials}
        waiting = "PENDING" in states and "RUNNING" not in states
        now = time.monotonic()
        if not waiting:
            self._idle_since, self.progress.note = None, None
            return
        self._idle_since = self._idle_since or now
        if now - self._idle_since < self.WAIT_S or now - self._noted < 30:
            return
        self._noted = now
        nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
        self.progress.note = capacity.waiting_note(self.asked, nodes, autoscaler_status())

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update(trial, result)  # Tune calls this before it sets the trial's last_result

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, state="TERMINATED")  # Tune calls this before it sets the status

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial)  # back to PENDING, to restart from its checkpoint

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for trial in trials:
            self._update(trial)
        self.progress.close()
