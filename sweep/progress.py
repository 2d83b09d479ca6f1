"""What a running sweep shows: one line per trial (dataset, family, width, axes, seed, state, epoch
of total, -ELBO per image, train MSE) and a summary line (trials by state, epochs done of total,
time left). On a terminal the table is redrawn in place, the running trials first, as many as fit;
otherwise changed trials (at most ``MANY``) and the summary are printed as plain lines now and then,
for logs (CI, `ray job submit`). A sweep of more than ``MANY`` trials ends with one line per
variant (its trials by state, mean -ELBO and MSE) instead of one per trial. No Ray here: the
runner feeds it from a Tune callback, `sweep status --watch` from the experiment's files.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

STATES = ("TERMINATED", "RUNNING", "PENDING", "PAUSED", "ERROR")
MANY = 40  # more trials than this: a summary per variant at the end, and capped lists in logs


@dataclass
class Line:
    """One trial's row."""

    dataset: str
    family: str
    width: int | None
    axes: dict[str, Any]
    seed: str  # "0", or "0,1,2" for a vectorized trial
    state: str = "PENDING"
    epoch: int = 0
    epochs: int = 0
    neg_elbo: float | None = None  # per datapoint
    train_mse: float | None = None
    seconds: float = 0.0  # the trial's own time so far (Tune's time_total_s)

    def cells(self) -> list[str]:
        width = "-" if self.width is None else str(self.width)
        return [self.dataset, self.family, width, *map(str, self.axes.values()), self.seed, self.state,
                f"{self.epoch}/{self.epochs}", _num(self.neg_elbo, 1), _num(self.train_mse, 4)]


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def summary(lines: list[Line]) -> str:
    """'N trials: a TERMINATED, b RUNNING, ...; epochs E/T; about X left' (from the epochs per second
    of the work done so far, over the trials running at once)."""
    states = Counter(line.state for line in lines)
    counts = ", ".join(f"{states[s]} {s}" for s in STATES if states[s]) or "none yet"
    done, total = sum(line.epoch for line in lines), sum(line.epochs for line in lines)
    seconds = sum(line.seconds for line in lines)
    left = ""
    if done and seconds and done < total:
        rate = done / seconds * max(1, states["RUNNING"])  # epochs per second, all running trials
        left = f"; about {_duration((total - done) / rate)} left"
    return f"{len(lines)} trials: {counts}; epochs {done}/{total}{left}"


def _duration(s: float) -> str:
    return f"{s:.0f}s" if s < 90 else f"{s / 60:.0f}m" if s < 5400 else f"{s / 3600:.1f}h"


def table(lines: list[Line], axes: list[str], limit: int | None = None) -> list[str]:
    """The trials as aligned text rows under a header; with ``limit``, running trials first."""
    head = ["dataset", "family", "width", *axes, "seed", "state", "epoch", "-ELBO/pt", "train MSE"]
    shown = lines
    if limit is not None and len(lines) > limit:
        order = {"RUNNING": 0, "ERROR": 1, "PENDING": 2, "PAUSED": 2, "TERMINATED": 3}
        shown = sorted(lines, key=lambda ln: order.get(ln.state, 4))[: max(1, limit - 1)]
    rows = [head] + [ln.cells() for ln in shown]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    text = ["  ".join(c.ljust(w) if i < len(head) - 3 else c.rjust(w) for i, (c, w) in enumerate(
        zip(r, widths, strict=True))).rstrip() for r in rows]
    if len(shown) < len(lines):
        text.append(f"... and {len(lines) - len(shown)} more (python -m sweep status EXPERIMENT_DIR)")
    return text


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def by_variant(lines: list[Line], axes: list[str]) -> list[str]:
    """One row per dataset, family, width and axis values: its trials by state, the mean -ELBO per
    image and train MSE over those that reported them."""
    groups: dict[tuple, list[Line]] = {}
    for ln in lines:
        groups.setdefault((ln.dataset, ln.family, ln.width, *map(str, ln.axes.values())), []).append(ln)
    head = ["dataset", "family", "width", *axes, "trials", "states", "-ELBO/pt", "train MSE"]
    from trainables import families  # their declared order (encoders first), as the analysis

    def order(kv: tuple) -> tuple:
        (dataset, family, width, *values), _ = kv
        rank = families.declared(family).order if family in families.names() else 100
        return dataset, rank, family, width or 0, values

    rows = [head]
    for key, members in sorted(groups.items(), key=order):
        states = Counter(m.state for m in members)
        elbo = _mean([m.neg_elbo for m in members if m.neg_elbo is not None])
        mse = _mean([m.train_mse for m in members if m.train_mse is not None])
        rows.append([key[0], key[1], "-" if key[2] is None else str(key[2]), *key[3:], str(len(members)),
                     ", ".join(f"{states[s]} {s}" for s in STATES if states[s]), _num(elbo, 1), _num(mse, 4)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return ["  ".join(c.ljust(w) if i < len(head) - 2 else c.rjust(w) for i, (c, w) in enumerate(
        zip(r, widths, strict=True))).rstrip() for r in rows]


@dataclass
class Progress:
    """Collects trial lines and prints them: in place on a terminal, as plain lines otherwise."""

    axes: list[str]
    stream: TextIO | None = None  # None: sys.stdout at each write (the object is pickled with Tune's state)
    tty: bool | None = None
    every: float | None = None  # seconds between prints: 1 on a terminal, 30 otherwise
    lines: dict[str, Line] = field(default_factory=dict)
    note: str | None = None  # a line under the summary while it holds (what waiting trials wait for)

    def __post_init__(self) -> None:
        if self.tty is None:
            self.tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.every = self.every if self.every is not None else (1.0 if self.tty else 30.0)
        self._last, self._drawn, self._printed = 0.0, 0, {}

    @property
    def out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stdout

    def update(self, key: str, line: Line) -> None:
        self.lines[key] = line

    def show(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._last < self.every:
            return
        self._last = time.monotonic()
        lines = list(self.lines.values())
        if self.tty:
            limit = max(5, shutil.get_terminal_size((120, 40)).lines - 4)
            text = [*table(lines, self.axes, limit), summary(lines), *([self.note] if self.note else [])]
            erase = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
            self.out.write(erase + "\n".join(text) + "\n")
            self._drawn = len(text)
        else:  # the trials that moved since the last print (not those still waiting), then the summary
            moved = {k: (ln.state, ln.epoch) for k, ln in self.lines.items()}
            changed = {k: self.lines[k] for k, now in moved.items()
                       if self._printed.get(k) != now and now != ("PENDING", 0)}
            if changed:
                self.out.write("\n".join(table(list(changed.values()), self.axes, MANY)) + "\n")
            self.out.write(summary(lines) + "\n" + (self.note + "\n" if self.note else ""))
            self._printed.update({k: (ln.state, ln.epoch) for k, ln in changed.items()})
        self.out.flush()

    def close(self) -> None:
        """The whole table, once more, as the sweep ends; past ``MANY`` trials, a row per variant."""
        if self.tty and self._drawn:
            self.out.write(f"\x1b[{self._drawn}F\x1b[J")
        lines = list(self.lines.values())
        if len(lines) > MANY:
            text = [*by_variant(lines, self.axes), f"{summary(lines)}; per trial: python -m sweep status EXP"]
        else:
            text = table(lines, self.axes)
        self.out.write("\n".join(text) + "\n")
        self.out.flush()
