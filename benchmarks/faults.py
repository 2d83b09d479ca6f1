"""Inject the faults shared and spot machines cause, for real, and count what the sweep lost.

    python benchmarks/faults.py                 # every scenario, then the table
    python benchmarks/faults.py --only worker_kill node_loss --json     # JSON lines, no table
    python benchmarks/faults.py --kills 2 --json docs/bench/faults.json   # the table, and this file
    python benchmarks/faults.py --only chaos --kills 10     # the driver killed at 10 points, x3
    python benchmarks/faults.py --one-cluster --n-train 200 --epochs 10 --checkpoint-every 1 \
        --only driver_kill worker_kill storage_full    # as `make test` does

Each scenario starts its own local Ray cluster (testbed.cluster.LocalCluster: `ray start` nodes, a
0-CPU head and a 2-CPU worker node, two for node_loss), or with --one-cluster all run one after
another on one cluster of two 2-CPU worker nodes (node_loss last, as it kills one). Each runs a
small real sweep on Fashion-MNIST (4 trials, 6 for driver_kill; 30 epochs, a checkpoint every 5:
--epochs, --checkpoint-every) with the driver in its own process, injects one fault, recovers the
way a user would (`sweep resume`, or Tune's own restarts with max_failures), exports, and counts:
trials affected, trials finished, epochs lost (a finished trial must report epochs 1..30, each
exactly once) and duplicates. A fault waits for checkpoints at given epochs, not for a time, so it
lands mid-sweep however loaded the machine; the chaos matrix's kills at given seconds are the
exception, and each row says whether its kills landed. --json PATH writes the rows, the table, the
settings, the wall time, the machine and the command line to a file.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from testbed.cluster import LocalCluster  # noqa: E402
from testbed.trials import trial_dirs  # noqa: E402

# the scenarios' sweep, at the sizes Settings gives it
BASE = {
    "name": "faults",
    "datasets": ["fashion_mnist"],
    "families": ["amortized", "constant"],
    "widths": [4],
    "seeds": [0, 1],
    "train": {
        "n_train": 1000,  # --n-train
        "n_test": 100,
        "epochs": 30,  # --epochs
        "batch_size": 100,
        "sigma_x": 0.3,
        "theta_init": "torch",
    },
    "report_every": 1,
    "checkpoint_every": 5,  # --checkpoint-every
    "test_inference": False,
    "max_failures": 0,
}


@dataclass(frozen=True)
class Settings:
    """The sizes of the scenarios' sweeps (chaos's aside) and the chaos matrix's kill times: the flags."""

    n_train: int = 1000  # images per trial
    epochs: int = 30  # per trial
    checkpoint_every: int = 5  # epochs between checkpoints
    kills: int = 10  # chaos: kill times spread over an uninterrupted run

    def spec(self, **changes) -> dict:
        """A scenario's sweep spec: BASE at these sizes, with ``changes``."""
        train = {**BASE["train"], "n_train": self.n_train, "epochs": self.epochs}
        return {**BASE, "train": train, "checkpoint_every": self.checkpoint_every, **changes}

    def flags(self) -> list[str]:
        """These settings as this script's command-line flags."""
        return ["--kills", str(self.kills), "--n-train", str(self.n_train), "--epochs", str(self.epochs),
                "--checkpoint-every", str(self.checkpoint_every)]


def sweep(*args: str, cluster: LocalCluster, env: dict | None = None, **kw) -> subprocess.Popen:
    """A `sweep` command, a client of ``cluster``, in a session of its own (killed with its group)."""
    env = {**cluster.env(), "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "sweep", *args],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def newest_state(trial_dir: Path) -> dict | None:
    """The trial's (one seed's) state at its newest readable checkpoint, found as a resumed trial finds it."""
    import pyarrow.fs as pafs

    from sweep.trialrun import checkpoint_dirs
    from sweep.trialrun import newest_state as newest

    with contextlib.redirect_stdout(io.StringIO()):  # its 'unreadable' notes: a checkpoint mid-write
        state = newest(checkpoint_dirs(pafs.LocalFileSystem(), str(trial_dir)), torch.device("cpu"))[0]
    return state and state["seeds"][0]


def started(exp: Path) -> dict[str, Path]:
    """Trial id -> directory of each trial started in ``exp`` so far, from disk (Tune's snapshot lags
    a running sweep); none before the experiment directory exists."""
    return trial_dirs(exp) if exp.is_dir() else {}


def states(exp: Path) -> dict[str, dict]:
    """Each trial's newest readable checkpoint on disk, by trial id (trials with none left out)."""
    out = {}
    for tid, d in started(exp).items():
        state = newest_state(d)
        if state:
            out[tid] = state
    return out


def checkpointed(trial_dir: Path) -> int | None:
    """Epoch of a trial's newest checkpoint on disk, as the row saved with it says: cheap enough to
    poll (loading the checkpoints themselves would take a core of a 2-core machine from the sweep)."""
    for checkpoint in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        with contextlib.suppress(OSError, ValueError, KeyError):  # still being written: the one before
            return json.loads((checkpoint / "report.json").read_text())["epoch"]
    return None


def progress(exp: Path) -> dict[str, int]:
    """Epoch of each trial's newest checkpoint on disk, by trial id (trials with none left out)."""
    return {tid: e for tid, d in started(exp).items() if (e := checkpointed(d)) is not None}


def reported(trial_dir: Path) -> list[dict]:
    """The rows in a trial's result.json (a last line still being written left out)."""
    path, rows = trial_dir / "result.json", []
    for line in path.read_text().splitlines() if path.exists() else []:
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a live process, None once it is gone (a zombie counts as gone)."""
    try:
        state, ppid = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (OSError, ValueError):
        return None
    return (state, int(ppid)) if state != "Z" else None


def midway(exp: Path, s: Settings) -> list[tuple[Path, int]]:
    """(folder, process) of the trials running with a checkpoint and at least a checkpoint interval
    to go."""
    epochs, every = s.epochs, s.checkpoint_every
    found = []
    for d in started(exp).values():
        epoch = checkpointed(d)
        if epoch is not None and every <= epoch < epochs - every and (rows := reported(d)):
            found.append((d, rows[-1]["pid"]))
    return found


def freeze_midway(exp: Path, s: Settings, where=lambda pid: True) -> int | None:
    """SIGSTOP the process of a trial found midway (and ``where(pid)``), and keep it frozen only if
    its trial is still midway once what it reported before it froze has reached result.json: on a
    fast machine a trial's last epochs take less time than finding it, and a process whose trial
    has finished is no trial's fault (CI runs saw none restart). Its pid, or None."""
    for d, pid in midway(exp, s):
        if not where(pid):
            continue
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:  # its trial ended and its process with it
            continue
        time.sleep(2.0)  # the driver writes the rows the trial reported before it froze
        if (rows := reported(d)) and rows[-1]["pid"] == pid and rows[-1]["epoch"] < s.epochs:
            return pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # it had finished: not midway after all
    return None


def wait_for(pred, timeout: float = 240, what: str = ""):
    """The first true value pred() returns, polled every 0.1 s."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := pred():
            return value
        time.sleep(0.1)
    raise TimeoutError(f"never saw: {what}")


def kill_driver(proc: subprocess.Popen, exp: Path) -> None:
    """SIGKILL a sweep command, then wait for its trials' processes: Ray ends them with their driver
    within a second or so, and they may checkpoint once more meanwhile; what is on disk after this
    is what the killed sweep left."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    pids = {rows[-1]["pid"] for d in started(exp).values() if (rows := reported(d))}
    wait_for(lambda: not any(proc_stat(p) for p in pids), timeout=60, what="the killed sweep's trials exit")


def export(exp: Path) -> pd.DataFrame:
    """The experiment's tidy table, as `sweep export` writes it (read here, in this process)."""
    from sweep.experiment import load_trials
    from sweep.results import tidy

    return tidy(load_trials(str(exp)))


def count(exp: Path, epochs: int, table: pd.DataFrame | None = None) -> dict:
    """Trials finished, epochs lost and duplicated, per the exported table (exported here if not given)."""
    from ray.tune import ExperimentAnalysis

    table = export(exp) if table is None else table
    rows = table.groupby("trial_id")
    finished = rows.epoch.max() == epochs
    lost = sum(epochs - g.epoch.nunique() for _, g in rows if g.epoch.max() == epochs)
    failures = {t.trial_id: t.num_failures for t in ExperimentAnalysis(str(exp)).trials}
    return {
        "trials": len(failures),
        "finished": int(finished.sum()),
        "epochs_lost": int(lost),
        "duplicates": int(len(table) - table.groupby(["trial_id", "epoch"]).ngroups),
        "restarts": int(sum(failures.values())),
    }


def start_cluster(workers: int) -> LocalCluster:
    """A local cluster of ``workers`` 2-CPU worker nodes (and a 0-CPU head: the sweeps' drivers run
    beside it, as clients)."""
    return LocalCluster(workers=workers, cpus_per_worker=2).start()


def write_spec(work: Path, spec: dict, storage: Path | None = None) -> Path:
    """``spec`` as work/spec.yaml, its results in ``storage`` (default work/results)."""
    work.mkdir(parents=True, exist_ok=True)
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "storage": str(storage or work / "results")}))
    return path


DRIVER_KILL_FAMILIES = ["amortized", "factorized", "constant"]


def driver_kill(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    # 6 trials, more than a 4-CPU cluster runs at once: some finish while others are midway
    spec = write_spec(work, s.spec(families=DRIVER_KILL_FAMILIES))
    exp = work / "results" / "faults"
    epochs, every = s.epochs, s.checkpoint_every
    proc = sweep("run", str(spec), cluster=cluster)
    wait_for(
        lambda: (
            (p := progress(exp))
            and max(p.values()) == epochs
            and any(every <= e < epochs - every for e in p.values())
            and any(exp.glob("experiment_state-*.json"))
        ),
        what="finished and midway trials",
    )
    kill_driver(proc, exp)
    left = states(exp)
    trials = len(started(exp))
    rc, out = finish(sweep("resume", str(exp), cluster=cluster))
    table = export(exp)
    return {
        "fault": "driver SIGKILL mid-sweep; `sweep resume`",
        "affected": trials - sum(s["epoch"] == epochs for s in left.values()),
        "rc": rc,
        **count(exp, epochs, table),
        **kept(left, table, epochs),
    }


def kept(left: dict[str, dict], table: pd.DataFrame, epochs: int) -> dict:
    """What a resume kept of the checkpoints a killed driver left (``left``, by trial id):
    the exported rows of every epoch up to a trial's checkpoint must be the checkpoint's own, timings
    included (a finished trial not re-run, the others continued, not restarted), and a trial
    continued from a checkpoint before its last epoch trained more after it."""
    rerun, continued = 0, 0
    for tid, state in left.items():
        rows = table[table.trial_id == tid].set_index("epoch")
        for m in (m for m in state["history"] if m["epoch"] in rows.index):  # a missing one: epochs_lost
            row = rows.loc[m["epoch"]]
            rerun += not (row.opt_seconds == m["opt_seconds"] and math.isclose(row.neg_elbo, m["neg_elbo"],
                                                                                rel_tol=1e-6))
        last = rows.loc[epochs, "opt_seconds"] if epochs in rows.index else -math.inf
        continued += state["epoch"] < epochs and last > state["history"][-1]["opt_seconds"]
    return {
        "finished_before_kill": sum(s["epoch"] == epochs for s in left.values()),
        "checkpointed_midway": sum(s["epoch"] < epochs for s in left.values()),
        "continued_trials": int(continued),
        "rerun_epochs": int(rerun),
        "terminated": int((table.groupby("trial_id").status.first() == "TERMINATED").sum()),
    }


def worker_kill(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    spec = write_spec(work, s.spec(max_failures=3))
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), cluster=cluster)
    pid = wait_for(lambda: freeze_midway(exp, s), what="a running trial with a checkpoint")
    os.kill(pid, signal.SIGKILL)
    rc, out = finish(proc)
    return {
        "fault": "SIGKILL of a trial's worker process; max_failures 3",
        "affected": 1,
        "rc": rc,
        **count(exp, s.epochs),
    }


def node_loss(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    spec = write_spec(work, s.spec(max_failures=3))
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), cluster=cluster)
    victim = len(cluster.workers) - 1  # the last worker node; another is left to run the trials
    node = cluster.workers[victim]

    # frozen as it is found: finding the node's processes to kill takes longer than a trial's last epochs
    wait_for(lambda: freeze_midway(exp, s, lambda pid: cluster.node_of(pid) == node),
             what="a trial with a checkpoint running on the worker node")
    cluster.kill_worker(victim)  # the worker node dies with its trials, the frozen one among them
    rc, out = finish(proc)
    result = count(exp, s.epochs)
    return {
        "fault": "worker node killed while trials ran on it; max_failures 3",
        "affected": result["restarts"],
        "rc": rc,
        **result,
    }


def corrupt_checkpoint(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    spec = write_spec(work, s.spec())
    exp = work / "results" / "faults"
    epochs, every = s.epochs, s.checkpoint_every
    proc = sweep("run", str(spec), cluster=cluster)
    two = 2 * every  # num_to_keep 2: from here on a trial has an older checkpoint to fall back to
    wait_for(lambda: any(two <= e < epochs - every for e in progress(exp).values()),
             what="a trial with two checkpoints")
    kill_driver(proc, exp)
    left = {tid: state["epoch"] for tid, state in states(exp).items()}
    midway = {tid: e for tid, e in left.items() if two <= e < epochs}
    if not midway:
        raise RuntimeError(f"no trial left midway with two checkpoints: {sorted(left.values())}")
    victim = started(exp)[max(midway, key=midway.get)]
    newest = sorted(victim.glob("checkpoint_*"))[-1] / "trial.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # truncated mid-write
    rc, out = finish(sweep("resume", str(exp), cluster=cluster))
    said = "unreadable, trying an older one" in out
    return {
        "fault": "newest checkpoint truncated; `sweep resume`",
        "affected": 1,
        "rc": rc,
        "logged_fallback": said,
        **count(exp, epochs),
    }


def nonfinite(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    # sigma_x 1e-30 underflows the likelihood's variance: loglik is -inf at the first step
    spec = write_spec(work, s.spec(family_train={"constant": {"sigma_x": 1e-30}}))
    exp = work / "results" / "faults"
    rc, _ = finish(sweep("run", str(spec), cluster=cluster))
    rc_status, status = finish(sweep("status", str(exp), cluster=cluster))
    start = time.time()
    rc_resume, _ = finish(sweep("resume", str(exp), cluster=cluster))
    return {
        "fault": "ELBO non-finite in 2 trials; then `sweep resume`",
        "affected": 2,
        "rc": rc,
        "rc_resume": rc_resume,
        "resume_seconds": round(time.time() - start, 1),
        "status_shows": "non-finite at epoch 1: term loglik" in status,
        **count(exp, s.epochs),
    }


def storage_full(work: Path, cluster: LocalCluster, s: Settings) -> dict:
    full = work / "tiny"
    full.mkdir(parents=True)
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        return {"fault": "storage full at launch", "skipped": "mounting a 1 MB tmpfs needs root"}
    try:
        spec = write_spec(work, s.spec(), storage=full)
        rc, out = finish(sweep("run", str(spec), cluster=cluster))
        started = len(list(full.rglob("*")))
    finally:
        subprocess.run(["umount", str(full)], check=False)
    return {
        "fault": "storage full (1 MB tmpfs) at launch",
        "affected": 0,
        "rc": rc,
        "trials": 0,
        "finished": 0,
        "epochs_lost": 0,
        "duplicates": 0,
        "files_written": started,
        "message": out.strip().splitlines()[-1],
    }


# The chaos matrix: fast epochs, the driver SIGKILLed at many points. The race a loaded machine makes
# by chance is made here every time: Tune snapshots its experiment state rarely (TUNE_GLOBAL_CHECKPOINT_S
# 1,000 s, but for the snapshots it forces), and after each kill every checkpoint of an unfinished
# trial but its newest is deleted, as num_to_keep does between a snapshot and the next: the state
# then names checkpoints that are gone.
CHAOS_EPOCHS = 12
CHAOS = {
    "name": "chaos",
    "families": ["amortized", "factorized", "constant"],
    "seeds": [0],
    "train": {**BASE["train"], "n_train": 400, "epochs": CHAOS_EPOCHS},
}
SLOW_SNAPSHOTS = {"TUNE_GLOBAL_CHECKPOINT_S": "1000"}
CHAOS_EVERY = (1, 2, 5)  # checkpoint periods, each kill time on each
CHAOS_RESUME_KILL_EPOCHS = 2  # the last case: the run, then its resume, killed this many epochs in


@dataclass(frozen=True)
class KillAt:
    """When chaos SIGKILLs a command: ``seconds`` after its launch, or once a trial, unfinished, has
    checkpointed ``epochs`` epochs more than it had at the launch (mid-sweep on any machine)."""

    seconds: float | None = None
    epochs: int | None = None

    def __str__(self) -> str:
        return f"at {self.seconds:.1f} s" if self.seconds is not None else f"{self.epochs} epochs in"


def final_elbos(table: pd.DataFrame) -> dict:
    last = table[table.epoch == table.epoch.max()]
    return {(r.family, r.width if pd.notna(r.width) else None, r.seed): r.neg_elbo for r in last.itertuples()}


def chaos_reference(work: Path, cluster: LocalCluster, s: Settings) -> tuple[dict, float]:
    """An uninterrupted run of the chaos spec: (final -ELBO per trial, its wall seconds)."""
    spec = write_spec(work, s.spec(**CHAOS))
    start = time.time()
    rc, out = finish(sweep("run", str(spec), cluster=cluster))
    if rc != 0:
        raise RuntimeError(out)
    return final_elbos(export(work / "results" / "chaos")), time.time() - start


def kill_when(proc: subprocess.Popen, exp: Path, at: KillAt) -> bool:
    """SIGKILL a chaos command at ``at`` (and wait for its trials to exit); False if it ended first."""
    if at.seconds is not None:
        try:
            proc.wait(timeout=at.seconds)
            return False
        except subprocess.TimeoutExpired:
            pass
    else:
        start = progress(exp)
        wait_for(lambda: proc.poll() is not None or any(
            start.get(tid, 0) + at.epochs <= e < CHAOS_EPOCHS for tid, e in progress(exp).items()
        ), what=f"a trial {at.epochs} epochs further")
        if proc.poll() is not None:
            return False
    kill_driver(proc, exp)
    return True


def chaos(work: Path, cluster: LocalCluster, s: Settings, kills: list[KillAt], checkpoint_every: int,
          reference: dict) -> dict:
    """Kill `sweep run` at kills[0] (and the first `resume` at kills[1], if given), then resume
    until every trial is finished (at most 2 resumes counted); compare with the uninterrupted run."""
    spec = write_spec(work, s.spec(**CHAOS, checkpoint_every=checkpoint_every))
    exp = work / "results" / "chaos"
    landed = 0
    for command, at in zip(("run", "resume"), kills, strict=False):  # a resume killed too, if given
        proc = sweep(command, str(spec if command == "run" else exp), cluster=cluster, env=SLOW_SNAPSHOTS)
        if kill_when(proc, exp, at):
            landed += 1
            keep_newest_checkpoint_only(exp)
    resumes, rc = 0, 1
    while rc != 0 and resumes < 3:  # killed before the experiment existed: launched again, as a user would
        again = ("resume", str(exp)) if exp.is_dir() else ("run", str(spec))
        rc, out = finish(sweep(*again, cluster=cluster, env=SLOW_SNAPSHOTS))
        resumes += 1
    row = {
        "fault": f"driver SIGKILL {kills[0]}, checkpoint every {checkpoint_every}"
        + (f", resume killed {kills[1]}" if len(kills) > 1 else ""),
        "rc": rc,
        "kills": len(kills),
        "kills_landed": landed,
        "resumes": resumes,
    }
    if rc != 0:  # the experiment may no longer be readable: what the last command said, not counts
        return {**row, "failed": out.strip().splitlines()[-1] if out.strip() else ""}
    table = export(exp)
    result, finals = count(exp, CHAOS_EPOCHS, table), final_elbos(table)
    worst = max((abs(finals.get(k, float("inf")) / v - 1) for k, v in reference.items()), default=0.0)
    return {**row, "affected": result["trials"], "max_rel_diff": worst, **result}


def keep_newest_checkpoint_only(exp: Path) -> None:
    """Delete every checkpoint but the newest of each unfinished trial (num_to_keep's deletions that
    the last experiment-state snapshot did not see)."""
    import shutil

    for d in started(exp).values():
        checkpoints = sorted(d.glob("checkpoint_*"))
        state = newest_state(d) if checkpoints else None
        if state is not None and state["epoch"] < CHAOS_EPOCHS:
            for old in checkpoints[:-1]:
                shutil.rmtree(old)


def chaos_matrix(work: Path, cluster: LocalCluster, s: Settings) -> list[dict]:
    """``s.kills`` kill times spread over an uninterrupted run, each with checkpoints every 1, 2 and 5
    epochs, on fresh experiments; and one run killed 2 epochs in, its resume 2 epochs in as well
    (epochs, not seconds: both kills land mid-training whatever the machine's load)."""
    out = []
    reference, seconds = chaos_reference(work / "reference", cluster, s)
    points = [KillAt(seconds=seconds * (i + 0.5) / s.kills) for i in range(s.kills)]
    cases = [([at], every) for at in points for every in CHAOS_EVERY]
    cases.append(([KillAt(epochs=CHAOS_RESUME_KILL_EPOCHS), KillAt(epochs=CHAOS_RESUME_KILL_EPOCHS)], 1))
    for i, (at, every) in enumerate(cases):
        start = time.time()
        result = chaos(work / f"case{i}", cluster, s, at, every, reference)
        out.append({"scenario": "chaos", **result, "seconds": round(time.time() - start, 1)})
    return out


# the scenarios of one row each, by name; "chaos" (chaos_matrix) gives a row per case
SCENARIOS = {"driver_kill": driver_kill, "worker_kill": worker_kill, "node_loss": node_loss,
             "corrupt_checkpoint": corrupt_checkpoint, "nonfinite": nonfinite, "storage_full": storage_full}
NAMES = [*SCENARIOS, "chaos"]


def run_on(name: str, work: Path, cluster: LocalCluster, s: Settings) -> list[dict]:
    """One scenario's rows, on a running cluster (node_loss kills its last worker node)."""
    if name == "chaos":
        return chaos_matrix(work, cluster, s)
    start = time.time()
    result = SCENARIOS[name](work, cluster, s)
    return [{"scenario": name, **result, "seconds": round(time.time() - start, 1)}]


def run(name: str, s: Settings) -> list[dict]:
    """One scenario on a cluster of its own (a 2-CPU worker node, and a second for node_loss to kill)."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_cluster(workers=2 if name == "node_loss" else 1)
        try:
            return run_on(name, Path(tmp), cluster, s)
        finally:
            cluster.stop()


def run_together(names: list[str], s: Settings) -> list[dict]:
    """The scenarios one after another on one cluster of two 2-CPU worker nodes: one cluster start
    instead of one each. node_loss last, since it kills a node; rows in the order run."""
    with tempfile.TemporaryDirectory() as tmp:
        cluster = start_cluster(workers=2)
        try:
            order = sorted(names, key=lambda n: n == "node_loss")
            return [r for name in order for r in run_on(name, Path(tmp) / name, cluster, s)]
        finally:
            cluster.stop()


def run_apart(names: list[str], at_once: int, s: Settings) -> list[dict]:
    """Each scenario in a process of its own (its own cluster), ``at_once`` at a time; rows in order.
    Part of a scenario's time is waiting (polls, processes starting), so a few at once finish
    somewhat sooner even on 2 cores (the test's set: 454 s one at a time, 399 s three at a time);
    a kill then lands at another point of a run: still a kill."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> list[dict]:
        out = subprocess.run([sys.executable, __file__, "--json", "--only", name, *s.flags()],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"scenario {name} failed:\n{out.stdout[-3000:]}{out.stderr[-3000:]}")
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]

    with ThreadPoolExecutor(at_once) as pool:  # the longest (chaos) first
        started = {name: pool.submit(one, name) for name in sorted(names, key=lambda n: n != "chaos")}
        return [r for name in names for r in started[name].result()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=NAMES, default=NAMES)
    p.add_argument("--kills", type=int, default=10,
                   help="chaos: kill times spread over the run (0: only the run killed mid-resume)")
    p.add_argument("--n-train", type=int, default=1000, help="images per trial (smaller: faster epochs)")
    p.add_argument("--epochs", type=int, default=30, help="epochs per trial (not chaos's: 12)")
    p.add_argument("--checkpoint-every", type=int, default=5, help="epochs between checkpoints (not chaos's)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH",
                   help="alone: one JSON object per scenario on stdout, no table; with PATH: the table "
                        "printed, and the rows, the table and the settings written to PATH")
    p.add_argument("--one-cluster", action="store_true",
                   help="every scenario on one cluster (2-CPU head, 2-CPU worker), one after another")
    p.add_argument("--parallel", type=int, default=1,
                   help="scenarios at a time, each in its own process and Ray cluster (default 1)")
    args = p.parse_args()
    if 2 * args.checkpoint_every >= args.epochs:  # worker_kill and corrupt_checkpoint kill between
        p.error(f"--checkpoint-every {args.checkpoint_every} must be under half of --epochs {args.epochs}")
    s = Settings(n_train=args.n_train, epochs=args.epochs, checkpoint_every=args.checkpoint_every,
                 kills=args.kills)
    start = time.time()
    if args.one_cluster:
        results = run_together(args.only, s)
    elif args.parallel > 1 and len(args.only) > 1:
        results = run_apart(args.only, args.parallel, s)
    else:
        results = [r for name in args.only for r in run(name, s)]
    seconds = time.time() - start
    if args.json == "-":
        for r in results:
            print(json.dumps(r))
        return
    text = table(results)
    print(text)
    if args.json:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from record import write

        settings = {"scenarios": args.only, "kills": args.kills, "n_train": args.n_train,
                    "epochs": args.epochs, "checkpoint_every": args.checkpoint_every,
                    "one_cluster": args.one_cluster, "parallel": args.parallel, "trials": trials(s.spec()),
                    "driver_kill_trials": trials(s.spec(families=DRIVER_KILL_FAMILIES)),
                    "chaos_trials": trials(s.spec(**CHAOS)), "chaos_epochs": CHAOS_EPOCHS,
                    "chaos_n_train": CHAOS["train"]["n_train"], "chaos_checkpoint_every": list(CHAOS_EVERY),
                    "chaos_resume_kill_epochs": CHAOS_RESUME_KILL_EPOCHS}
        write(args.json, {"settings": settings, "seconds": seconds, "rows": results, "table": text}, None)


def trials(spec: dict) -> int:
    """Trials of a scenario's spec: its variants (amortized at each width, the others once) x seeds."""
    variants = sum(len(spec.get("widths", [])) if f == "amortized" else 1 for f in spec["families"])
    return variants * len(spec["seeds"])


def table(results: list[dict]) -> str:
    """The markdown table of the scenarios' rows."""
    lines = ["| fault injected | trials | affected | finished | epochs lost | duplicate epochs | resumes "
             "| final -ELBO vs uninterrupted |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "skipped" in r or "failed" in r:
            why = f"skipped: {r['skipped']}" if "skipped" in r else f"failed: {r['failed']}"
            lines.append(f"| {r['fault']} | {why} | | | | | | |")
            continue
        same = f"max rel. diff {r['max_rel_diff']:.1e}" if "max_rel_diff" in r else ""
        lines.append(f"| {r['fault']} | {r['trials']} | {r['affected']} | {r['finished']} "
                     f"| {r['epochs_lost']} | {r['duplicates']} | {r.get('resumes', '')} | {same} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
