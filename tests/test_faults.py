"""Faults made to happen for real (benchmarks/faults.py): the sweep survives and loses nothing.

The scenarios run once each, one after another on one Ray cluster, at sizes small enough to be quick
and large enough that each fault lands mid-sweep (each waits for checkpoints, not for a time, and
reports where its kill landed); a node's loss, a truncated checkpoint, non-finite trials and the
chaos matrix (on a cluster of its own) are `slow`.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# 10 epochs, a checkpoint each: every kill waits for a checkpoint and leaves at least one to go
# (worker_kill, node_loss: epoch 1 to 8; corrupt_checkpoint: 2 to 8); an epoch is ~0.15 s here, so a
# sweep's time is its processes starting (~12 s a command), not its epochs.
FAST = ["--one-cluster", "--n-train", "200", "--epochs", "10", "--checkpoint-every", "1"]
# every scenario is `slow` (`make test-all`, which CI runs): the benchmark's cluster takes two minutes
# to start and run them. In `make test`, a killed and resumed sweep: tests/test_s3.py; a worker's
# loss: tests/test_cluster_sweep.py; the reader's fallback past a truncated checkpoint:
# tests/test_trialrun.py; a trial erroring while others finish: tests/test_sweep.py
SCENARIOS = ["driver_kill", "worker_kill", "storage_full"]
SLOW_SCENARIOS = ["node_loss", "corrupt_checkpoint", "nonfinite"]


def faults_benchmark(*flags: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "benchmarks/faults.py", "--json", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def faults(fashion_available):
    return {r["scenario"]: r for r in faults_benchmark(*FAST, "--only", *SCENARIOS)}


@pytest.fixture(scope="module")
def more_faults(fashion_available):
    return {r["scenario"]: r for r in faults_benchmark(*FAST, "--only", *SLOW_SCENARIOS)}


@pytest.fixture(scope="module")
def chaos_matrix(fashion_available):
    """One kill time x checkpoints every 1, 2, 5 epochs, and a run killed mid-resume (ten kill times
    in the benchmark), on a cluster of its own, as the benchmark runs it."""
    return faults_benchmark("--kills", "1", "--only", "chaos")


def finished_every_epoch_once(r: dict, trials: int) -> None:
    assert r["rc"] == 0
    assert r["affected"] >= 1
    assert r["trials"] == r["finished"] == trials
    assert r["epochs_lost"] == 0 and r["duplicates"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("name, trials", [("driver_kill", 6), ("worker_kill", 4)])
def test_recovered_trials_finish_with_every_epoch_once(faults, name, trials):
    finished_every_epoch_once(faults[name], trials)


@pytest.mark.slow
def test_trials_of_a_lost_node_restart_from_checkpoints_and_finish(more_faults):
    finished_every_epoch_once(more_faults["node_loss"], 4)
    assert more_faults["node_loss"]["restarts"] >= 1


@pytest.mark.slow
def test_resume_after_driver_kill_continues_checkpoints_and_reruns_nothing(faults):
    """The driver SIGKILLed once some trials finished and others had checkpoints (and the trials'
    processes gone with it); `sweep resume` finishes every trial. For each epoch up to a trial's
    checkpoint at the kill, the exported row is the checkpoint's own (opt_seconds equal, -ELBO
    within 1e-6): the finished trials were not re-run, the others continued, not restarted; and each
    trial left midway trained past its checkpoint."""
    r = faults["driver_kill"]
    assert r["finished_before_kill"] >= 1 and r["checkpointed_midway"] >= 1, r  # landed mid-sweep
    assert r["rerun_epochs"] == 0, r
    assert r["continued_trials"] == r["checkpointed_midway"], r
    assert r["terminated"] == r["trials"], r


@pytest.mark.slow
def test_worker_loss_restarts_from_checkpoints(faults):
    assert faults["worker_kill"]["restarts"] == 1


@pytest.mark.slow
def test_a_truncated_checkpoint_falls_back_and_says_so(more_faults):
    finished_every_epoch_once(more_faults["corrupt_checkpoint"], 4)
    assert more_faults["corrupt_checkpoint"]["logged_fallback"]


@pytest.mark.slow
def test_non_finite_trials_error_others_finish_resume_ends(more_faults):
    r = more_faults["nonfinite"]
    assert r["rc"] == 1 and r["trials"] == 4 and r["finished"] == 2 and r["duplicates"] == 0
    assert r["status_shows"]
    assert r["rc_resume"] == 1 and r["resume_seconds"] < 120  # retried once, not forever


@pytest.mark.slow
def test_full_storage_refused_before_any_trial(faults):
    r = faults["storage_full"]
    if "skipped" in r:
        pytest.skip(r["skipped"])
    assert r["rc"] == 2 and r["files_written"] == 0
    assert "MB free" in r["message"] and "need about" in r["message"]


@pytest.mark.slow
def test_driver_killed_anywhere_resumes_to_the_uninterrupted_result(chaos_matrix):
    """The chaos matrix (here one kill time x checkpoints every 1, 2, 5 epochs, and a run killed 2
    epochs in, its resume 2 epochs in too), with Tune's experiment-state snapshots slowed and, after
    each kill, every checkpoint but each trial's newest deleted, so that the last snapshot names
    checkpoints num_to_keep has deleted: every kill landed (the command still running), every trial
    finishes after at most 2 resumes, each epoch exported once, and the final -ELBO equals the
    uninterrupted run's (training is deterministic)."""
    assert len(chaos_matrix) == 4
    for r in chaos_matrix:
        assert r["rc"] == 0 and r["resumes"] <= 2, r
        assert r["kills_landed"] == r["kills"], r
        assert r["trials"] == r["finished"] == 3, r  # amortized, factorized, constant
        assert r["epochs_lost"] == 0 and r["duplicates"] == 0, r
        assert r["max_rel_diff"] < 1e-6, r
