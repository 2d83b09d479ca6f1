"""The sweep on a real Slurm cluster (the session's `slurm` fixture: munged, slurmctld and three
slurmd nodes on this machine): cluster/slurm/sweep.sbatch submitted with sbatch as a user submits
it, its results read from outside the job, a job cancelled mid-sweep and resubmitted, and one
requeued after the preemption signal. Every trial must end TERMINATED with every epoch once."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sweep.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "slurm" / "sweep.sbatch"
SMOKE = ROOT / "sweep" / "specs" / "smoke.yaml"


def submit(slurm, tmp: Path, spec: Path | str, name: str = "smoke", *more: str) -> str:
    """The job script as a user submits it from the repository's root, sized to the test cluster
    (three 1-CPU nodes: the head and two workers), with this Python and results under ``tmp``."""
    return slurm.submit("--nodes=3", "--cpus-per-task=1", "--time=10", f"--output={tmp}/job-%j.out", *more,
                        str(SCRIPT), str(spec), name, cwd=ROOT,
                        GAP_PYTHON=sys.executable, GAP_STORAGE=str(tmp / "results"),
                        GAP_RAY_TMP=str(slurm.root))  # Ray's files go with the test cluster


def longer_smoke(tmp: Path, epochs: int = 12) -> Path:
    """The smoke spec with trials long enough to stop one mid-sweep, checkpointing every 3 epochs."""
    spec = {**yaml.safe_load(SMOKE.read_text()), "checkpoint_every": 3}
    spec["train"] = {**spec["train"], "epochs": epochs}
    path = tmp / "smoke.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def exported(exp: Path, tmp: Path, capsys) -> pd.DataFrame:
    """`sweep export` of the experiment, from outside the job."""
    assert main(["export", str(exp), "-o", str(tmp / "out.parquet")]) == 0
    capsys.readouterr()
    return pd.read_parquet(tmp / "out.parquet")


def assert_every_epoch_once(table: pd.DataFrame, trials: int, epochs: int) -> None:
    assert table.trial_id.nunique() == trials
    assert (table.groupby("trial_id").status.first() == "TERMINATED").all()
    per_trial = table.groupby("trial_id").epoch.apply(list)
    assert per_trial.map(lambda e: e == list(range(1, epochs + 1))).all(), per_trial


def wait_for_checkpoint(exp: Path, timeout: float = 240) -> None:
    """Until some trial has written a checkpoint (the sweep is under way, with work to lose)."""
    deadline = time.monotonic() + timeout
    while not list(exp.glob("*/checkpoint_*")):
        assert time.monotonic() < deadline, "no checkpoint written"
        time.sleep(0.3)


def job_log(tmp: Path, job: str) -> str:
    return (tmp / f"job-{job}.out").read_text()


def failure(slurm, tmp: Path, job: str) -> str:
    """What a failed job's assertion shows: slurmctld's lines about it, then its log's end."""
    return f"slurmctld:\n{slurm.controller_log(job)}\njob log:\n{job_log(tmp, job)[-3000:]}"


def test_a_missing_spec_fails_the_job_in_one_line(slurm, tmp_path):
    job = submit(slurm, tmp_path, "sweep/specs/no-such.yaml")
    info = slurm.wait(job, "FAILED", "COMPLETED", timeout=60)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "2:0"
    assert job_log(tmp_path, job).strip() == (
        "sweep.sbatch: error: spec sweep/specs/no-such.yaml: no such file "
        "(usage: sbatch cluster/slurm/sweep.sbatch SPEC.yaml [NAME])")


@pytest.mark.slow
def test_a_sweep_submitted_with_sbatch_finishes_and_reads_back_from_outside(slurm, fashion_available,
                                                                           tmp_path, capsys):
    job = submit(slurm, tmp_path, SMOKE)
    assert job in slurm.queue()  # squeue shows it, pending or running
    info = slurm.wait(job, "COMPLETED", "FAILED", timeout=300)
    log = job_log(tmp_path, job)
    assert info["JobState"] == "COMPLETED", failure(slurm, tmp_path, job)
    assert "3 of 3 Ray nodes up" in log and "8 trials: 8 TERMINATED" in log
    exp = tmp_path / "results" / "smoke"
    assert main(["status", str(exp)]) == 0
    assert capsys.readouterr().out.strip().endswith("8 trials: 8 TERMINATED; epochs 32/32")
    assert_every_epoch_once(exported(exp, tmp_path, capsys), trials=8, epochs=4)


@pytest.mark.slow
def test_a_cancelled_job_resubmitted_finishes_every_epoch_once(slurm, fashion_available, tmp_path, capsys):
    spec = longer_smoke(tmp_path)
    exp = tmp_path / "results" / "smoke"
    job = submit(slurm, tmp_path, spec)
    wait_for_checkpoint(exp)
    slurm.run("scancel", job)  # TERM to the job's processes, SIGKILL after KillWait
    assert slurm.wait(job, "CANCELLED", timeout=120)["JobState"] == "CANCELLED"
    assert main(["status", str(exp)]) == 0
    assert "8 TERMINATED" not in capsys.readouterr().out  # cut short

    again = submit(slurm, tmp_path, spec)  # the same command: it resumes
    info = slurm.wait(again, "COMPLETED", "FAILED", timeout=300)
    assert info["JobState"] == "COMPLETED", failure(slurm, tmp_path, again)
    assert_every_epoch_once(exported(exp, tmp_path, capsys), trials=8, epochs=12)


@pytest.mark.slow
def test_a_job_requeued_after_the_preemption_signal_finishes_every_epoch_once(slurm, fashion_available,
                                                                             tmp_path, capsys):
    spec = longer_smoke(tmp_path)
    exp = tmp_path / "results" / "smoke"
    job = submit(slurm, tmp_path, spec)
    wait_for_checkpoint(exp)
    # what `#SBATCH --signal=B:USR1@120` sends the batch shell before the time limit
    slurm.run("scancel", "--signal=USR1", "--batch", job)
    info = slurm.wait(job, "PENDING", timeout=120)
    log = job_log(tmp_path, job)
    assert info["Restarts"] == "1" and "after USR1" in log and f"requeueing job {job}" in log, log[-3000:]
    assert "stopped early, its state saved" in log  # the driver stopped cleanly, not killed
    # Slurm holds a requeued job back for two minutes before it is eligible again: start it sooner
    slurm.release_requeued(job)
    info = slurm.wait(job, "COMPLETED", "FAILED", timeout=300)
    why = {k: info.get(k) for k in ("JobState", "Reason", "ExitCode", "Restarts", "NodeList")}
    assert info["JobState"] == "COMPLETED", f"{why}\n{failure(slurm, tmp_path, job)}"
    assert "(restart 1)" in job_log(tmp_path, job)
    assert_every_epoch_once(exported(exp, tmp_path, capsys), trials=8, epochs=12)
