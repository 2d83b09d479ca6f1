"""An experiment's trial directories on disk, by trial id, for the tests and benchmarks that look
inside them (while a sweep runs, or after a fault, when Tune's snapshot may not list them yet)."""

from __future__ import annotations

from pathlib import Path


def trial_dirs(exp: str | Path) -> dict[str, Path]:
    """Each trial directory of the local experiment ``exp`` by its trial id, in name order. The
    sweep names them "<trial id>-<dataset>-<family>..." (sweep.runner.trial_dirname), Tune's ids
    hold no "-", and no other directory of an experiment has one in its name."""
    dirs = sorted(d for d in Path(exp).iterdir() if d.is_dir() and "-" in d.name)
    return {d.name.split("-")[0]: d for d in dirs}
