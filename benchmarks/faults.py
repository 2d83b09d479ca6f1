"""Inject the faults shared and spot machines cause, for real, and count what the sweep lost.

    python benchmarks/faults.py                 # every scenario, then the table
    python benchmarks/faults.py --only worker_kill node_loss --json

Each scenario starts its own local Ray cluster (ray.cluster_utils.Cluster), runs a small real
sweep on Fashion-MNIST (4 trials x 30 epochs, a checkpoint every 5) with the driver in its own
process, injects one fault, recovers the way a user would (`sweep resume`, or Tune's own
restarts with max_failures), exports, and counts: trials affected, trials finished, epochs lost
(a finished trial must report epochs 1..30, each exactly once) and duplicates.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 30
BASE = {
    "name": "faults",
    "datasets": ["fashion_mnist"],
    "families": ["amortized", "constant"],
    "widths": [4],
    "seeds": [0, 1],
    "train": {
        "n_train": 1000,
        "n_test": 100,
        "epochs": EPOCHS,
        "batch_size": 100,
        "sigma_x": 0.3,
        "theta_init": "torch",
    },
    "report_every": 1,
    "checkpoint_every": 5,
    "test_inference": False,
    "max_failures": 0,
}


def sweep(*args: str, address: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_ADDRESS": address}
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
    for ck in sorted(trial_dir.glob("checkpoint_*"), reverse=True):
        try:
            return torch.load(ck / "trial.pt", weights_only=True)
        except Exception:
            continue
    return None


def progress(exp: Path) -> dict[Path, int]:
    """Epoch of each trial's newest readable checkpoint on disk."""
    out = {}
    for d in exp.glob("*-fashion_mnist-*"):
        state = newest_state(d) if d.is_dir() else None
        if state:
            out[d] = state["epoch"]
    return out


def wait_for(pred, timeout: float = 240, what: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise TimeoutError(f"never saw: {what}")


def count(exp: Path, work: Path) -> dict:
    """Trials finished, epochs lost and duplicated, per the exported table."""
    from ray.tune import ExperimentAnalysis

    out = work / "export.parquet"
    rc, text = finish(sweep("export", str(exp), "-o", str(out), address=""))
    if rc != 0:
        raise RuntimeError(text)
    table = pd.read_parquet(out)
    rows = table.groupby("trial_id")
    finished = rows.epoch.max() == EPOCHS
    lost = sum(EPOCHS - g.epoch.nunique() for _, g in rows if g.epoch.max() == EPOCHS)
    failures = {t.trial_id: t.num_failures for t in ExperimentAnalysis(str(exp)).trials}
    return {
        "trials": len(failures),
        "finished": int(finished.sum()),
        "epochs_lost": int(lost),
        "duplicates": int(len(table) - table.groupby(["trial_id", "epoch"]).ngroups),
        "restarts": int(sum(failures.values())),
    }


def start_cluster(worker: bool = False):
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    node = cluster.add_node(num_cpus=2) if worker else None
    cluster.wait_for_nodes()
    return cluster, node


def write_spec(work: Path, **changes) -> Path:
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump({**BASE, **changes, "storage": str(work / "results")}))
    return spec


def driver_kill(work: Path, address: str) -> dict:
    spec = write_spec(work)
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), address=address)
    wait_for(
        lambda: (
            (p := progress(exp))
            and max(p.values()) == EPOCHS
            and min(p.values()) < EPOCHS
            and len(p) >= 2
            and any(exp.glob("experiment_state-*.json"))
        ),
        what="finished and midway trials",
    )
    affected = sum(e < EPOCHS for e in progress(exp).values()) + (4 - len(progress(exp)))
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rc, out = finish(sweep("resume", str(exp), address=address))
    return {
        "fault": "driver SIGKILL mid-sweep; `sweep resume`",
        "affected": affected,
        "rc": rc,
        **count(exp, work),
    }


def worker_kill(work: Path, address: str) -> dict:
    spec = write_spec(work, max_failures=3)
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), address=address)

    def midway_pid():
        for d, epoch in progress(exp).items():
            rows = (
                [json.loads(x) for x in (d / "result.json").read_text().splitlines() if x.strip()]
                if (d / "result.json").exists()
                else []
            )
            if 5 <= epoch < EPOCHS - 5 and rows:
                return rows[-1]["pid"]
        return None

    wait_for(lambda: midway_pid() is not None, what="a running trial with a checkpoint")
    os.kill(midway_pid(), signal.SIGKILL)
    rc, out = finish(proc)
    return {
        "fault": "SIGKILL of a trial's worker process; max_failures 3",
        "affected": 1,
        "rc": rc,
        **count(exp, work),
    }


def node_loss(work: Path, cluster, node) -> dict:
    spec = write_spec(work, max_failures=3)
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), address=cluster.address)
    wait_for(
        lambda: len(p := progress(exp)) == 4 and all(e < EPOCHS for e in p.values()),
        what="four trials running with checkpoints",
    )
    cluster.remove_node(node, allow_graceful=False)  # the worker node dies with its trials
    rc, out = finish(proc)
    result = count(exp, work)
    return {
        "fault": "worker node killed while trials ran on it; max_failures 3",
        "affected": result["restarts"],
        "rc": rc,
        **result,
    }


def corrupt_checkpoint(work: Path, address: str) -> dict:
    spec = write_spec(work)
    exp = work / "results" / "faults"
    proc = sweep("run", str(spec), address=address)
    wait_for(
        lambda: any(10 <= e < EPOCHS for e in progress(exp).values()), what="a trial with two checkpoints"
    )
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    victim = max((d for d, e in progress(exp).items() if e < EPOCHS), key=lambda d: progress(exp)[d])
    newest = sorted(victim.glob("checkpoint_*"))[-1] / "trial.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])  # truncated mid-write
    rc, out = finish(sweep("resume", str(exp), address=address))
    said = "unreadable, trying an older one" in out
    return {
        "fault": "newest checkpoint truncated; `sweep resume`",
        "affected": 1,
        "rc": rc,
        "logged_fallback": said,
        **count(exp, work),
    }


def nonfinite(work: Path, address: str) -> dict:
    # sigma_x 1e-30 underflows the likelihood's variance: loglik is -inf at the first step
    spec = write_spec(work, family_train={"constant": {"sigma_x": 1e-30}})
    exp = work / "results" / "faults"
    rc, _ = finish(sweep("run", str(spec), address=address))
    rc_status, status = finish(sweep("status", str(exp), address=address))
    start = time.time()
    rc_resume, _ = finish(sweep("resume", str(exp), address=address))
    return {
        "fault": "ELBO non-finite in 2 trials; then `sweep resume`",
        "affected": 2,
        "rc": rc,
        "rc_resume": rc_resume,
        "resume_seconds": round(time.time() - start, 1),
        "status_shows": "non-finite at epoch 1: term loglik" in status,
        **count(exp, work),
    }


def storage_full(work: Path, address: str) -> dict:
    full = work / "tiny"
    full.mkdir()
    mounted = (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], capture_output=True
        ).returncode
        == 0
    )
    if not mounted:
        return {"fault": "storage full at launch", "skipped": "mounting a 1 MB tmpfs needs root"}
    try:
        spec = write_spec(work)
        raw = yaml.safe_load(spec.read_text())
        spec.write_text(yaml.safe_dump({**raw, "storage": str(full)}))
        rc, out = finish(sweep("run", str(spec), address=address))
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


SCENARIOS = ["driver_kill", "worker_kill", "node_loss", "corrupt_checkpoint", "nonfinite", "storage_full"]


def run(name: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cluster, node = start_cluster(worker=name == "node_loss")
        try:
            if name == "node_loss":
                return {"scenario": name, **node_loss(work, cluster, node)}
            return {"scenario": name, **globals()[name](work, cluster.address)}
        finally:
            cluster.shutdown()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=SCENARIOS, default=SCENARIOS)
    p.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = p.parse_args()
    results = [run(name) for name in args.only]
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    print("| fault injected | trials | affected | finished | epochs lost | duplicate epochs |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "skipped" in r:
            print(f"| {r['fault']} | skipped: {r['skipped']} | | | | |")
            continue
        print(
            f"| {r['fault']} | {r['trials']} | {r['affected']} | {r['finished']} | {r['epochs_lost']} "
            f"| {r['duplicates']} |"
        )


if __name__ == "__main__":
    main()
