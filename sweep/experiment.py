"""An experiment's files, read without Ray: the spec it was launched with, Tune's newest
experiment-state snapshot and each trial's reports, gap split and error, one TrialRecord a trial.
What `status`, `export`, `evaluate` and the analysis read; importing it loads no Ray, so they
start in the time Python and torch take.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import storage
from .tune_internals import SnapshotTrial, trial_records

if TYPE_CHECKING:
    from .spec import SweepSpec

SPEC_FILE = "sweep-spec.json"
# A second copy where Tune never writes: on restore Tune stages every top-level .json/.pkl file of the
# experiment and copies each back over its original at every save, in place, so SPEC_FILE is empty
# for moments during a resume, and a resume killed in one of them left it empty for good.
SPEC_COPY = ".sweep/sweep-spec.json"
GAP_FILE = "gap.json"


class SweepError(RuntimeError):
    """A sweep cannot start or resume as asked; the message says why and what to do."""


@dataclass(frozen=True)
class TrialRecord:
    """One trial as its experiment's files say (``load_trials``): what status, export, evaluate and
    the analysis read."""

    trial_id: str
    status: str  # Tune's: PENDING, RUNNING, PAUSED, TERMINATED, ERROR
    path: str  # its directory, a path or a URI as the experiment's was given
    config: dict[str, Any]  # its Tune config (sweep/tuneconfig.py)
    num_failures: int
    last_result: dict[str, Any]  # its newest report in Tune's snapshot ({} before the first)
    error: str | None  # the last line of its error file, for a failed trial
    gap: dict[str, Any] | None  # its gap.json (`evaluate`); None when missing or not read
    rows: list[dict[str, Any]] | None  # its reports, oldest first (result.json); None when not read

    @property
    def axes(self) -> dict[str, Any]:
        """Its values of the spec's `grid` axes, in the spec's order."""
        return self.config["cell"]["axes"]


def spec_json(exp: str) -> dict[str, Any]:
    """The spec an experiment was launched with, as saved (not validated); a clear error if ``exp``
    is no experiment."""
    if not storage.is_dir(exp):
        raise SweepError(f"{exp} is not a directory")
    for name in (SPEC_FILE, SPEC_COPY):  # the copy: when Tune left SPEC_FILE empty (see SPEC_COPY)
        try:
            return storage.read_json(storage.join(exp, name))
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            continue
    raise SweepError(f"{exp} is not a sweep experiment (no readable {SPEC_FILE})") from None


def read_spec(exp: str) -> SweepSpec:
    """The spec an experiment was launched with, validated; a clear error if ``exp`` is no experiment.
    (sweep.spec imported here: its rules read the engine's signatures, torch; reading results does not.)"""
    from .spec import parse_spec

    return parse_spec(spec_json(exp), source=f"{exp}/{SPEC_FILE}")


def experiment_states(exp: str) -> list[str]:
    """Tune's experiment-state snapshots in an experiment directory, oldest first: their names are
    timestamps, so by name, as Tune's own restore picks the newest."""
    return [storage.join(exp, n) for n in sorted(storage.children(exp))
            if n.startswith("experiment_state-") and n.endswith(".json")]


def saved_states(path: str) -> list[str]:
    """Each trial's state in the newest experiment-state snapshot Tune wrote under ``path`` (a sweep,
    or one cell of its Optuna stage); [] before Tune wrote one."""
    snapshots = experiment_states(path)
    return [r.status for r in trial_records(storage.read_bytes(snapshots[-1]))] if snapshots else []


READERS = 32  # files read at once: a bucket answers each request in milliseconds, one after another


def load_trials(exp: str, reports: str = "all", gaps: bool = True) -> list[TrialRecord]:
    """Every trial of an experiment, read from its files (no cluster needed), in Tune's order; its
    gap.json only with ``gaps``. ``reports``: whose reports (result.json) are read: "all", "none",
    or "unevaluated" (what `status` needs): the trials whose last result carries no train MSE
    (running, or between evaluations); a finished sweep's status then reads Tune's snapshot and
    nothing else."""
    if reports not in ("all", "unevaluated", "none"):
        raise ValueError(f"reports={reports!r} is not one of all, unevaluated, none")
    spec_json(exp)  # an experiment of the sweep's, or a clear error
    snapshots = experiment_states(exp)
    if not snapshots:
        raise SweepError(f"{exp}: cannot read the experiment state: no experiment_state-*.json yet "
                         "(the sweep stopped before Ray Tune wrote one; `resume` starts it)")
    try:  # the newest (their names are timestamps)
        records = trial_records(storage.read_bytes(snapshots[-1]))
    except Exception as e:  # half-written or foreign: its own message, on one line
        raise SweepError(f"{exp}: cannot read the experiment state {storage.name(snapshots[-1])}: "
                         f"{' '.join(str(e).split())}") from None

    fs, root = storage.resolve(exp)  # once: each trial's files are paths under it
    base = storage.norm(exp)  # as the user gave it (a URI keeps its scheme and query), made absolute
    uri = storage.is_uri(base)

    def read(path: str) -> bytes | None:
        try:
            with fs.open_input_stream(path) as f:
                return f.read()
        except (FileNotFoundError, OSError):  # missing (a bucket says so as an OSError)
            return None

    def wants_reports(r: SnapshotTrial) -> bool:  # (newer than the snapshot's while a sweep runs)
        return reports == "all" or reports == "unevaluated" and not any(
            k.endswith("train_mse") and v is not None for k, v in r.last_result.items())

    def files(r: SnapshotTrial) -> TrialRecord:
        where = f"{root}/{r.dirname}"
        gap = read(f"{where}/{GAP_FILE}") if gaps else None
        try:
            gap = json.loads(gap) if gap else None
        except json.JSONDecodeError:
            gap = None  # half-written: as missing (`evaluate` writes it again)
        error = r.error_filename and read(f"{where}/{r.error_filename}")
        rows = _reports(read(f"{where}/result.json")) if wants_reports(r) else None
        path = storage.join(base, r.dirname) if uri else f"{base}/{r.dirname}"  # no resolve() each
        return TrialRecord(r.trial_id, r.status, path, r.config, r.num_failures, r.last_result,
                           _error_line(r.error_filename, error), gap, rows)

    # thousands of small files: read side by side (pyarrow's reads let go of the GIL); a trial
    # with nothing to read (a finished one, for `status`) costs no task
    some = [r for r in records if gaps or r.error_filename or wants_reports(r)]
    with ThreadPoolExecutor(READERS) as pool:
        done = dict(zip(map(id, some), pool.map(files, some), strict=True))
    return [done[id(r)] if id(r) in done else files(r) for r in records]


def _reports(text: bytes | None) -> list[dict[str, Any]] | None:
    """A trial's reports, in order, from its result.json (a line each; Tune's config dropped). A
    line cut short (a report being written) is left out."""
    if text is None:
        return None
    rows = []
    for line in text.decode(errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        row.pop("config", None)
        rows.append(row)
    return rows


def _error_line(error_file: str | None, text: bytes | None) -> str | None:
    """The last line of a failed trial's error file."""
    if not error_file:
        return None
    if text is None:
        return "error (error file unreadable)"
    lines = [ln.strip() for ln in text.decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1] if lines else "error"
