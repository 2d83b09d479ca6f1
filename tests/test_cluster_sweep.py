"""The sweep on a real multi-node cluster started with `ray start` (a 0-CPU head, 1-CPU workers,
token authentication on), submitted with `ray job submit --working-dir`, its results on the real
S3 server; evaluate (its Ray tasks on the workers), status, export and figures asked for from
outside the cluster. A worker node is killed mid-sweep and the sweep finishes on the other; the
head is killed and `resume`, submitted as a new job to a new head, finishes every trial."""

import json
import os
import re
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from analysis.cli import main as analysis_main
from sweep import storage
from sweep.cli import main
from testbed.cluster import LocalCluster, ray_binary

pytestmark = [pytest.mark.cluster, pytest.mark.slow]  # minutes: `make test-all`

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "sweep" / "specs" / "smoke.yaml"
EPOCHS = 16


def spec_file(tmp_path: Path, name: str, n_train: int = 400) -> Path:
    """A small spec in a folder of its own, the job's working dir (the job reads it from there;
    the repo's packages come from PYTHONPATH, this being one machine). At 400 points a trial's 16
    epochs take about a second here."""
    raw = yaml.safe_load(SMOKE.read_text())
    raw.update(name=name, families=["amortized"], widths=[4], seeds=[0, 1, 2], checkpoint_every=2,
               test_inference=False, max_failures=2,
               train={**raw["train"], "n_train": n_train, "epochs": EPOCHS})
    path = tmp_path / "job" / f"{name}.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw))
    return path


def submit(cluster: LocalCluster, workdir: Path, *sweep_args: str, wait: bool = True) -> str:
    """`ray job submit --working-dir DIR -- python -m sweep ...` with the repo's packages on the path."""
    args = [ray_binary(), "job", "submit", "--address", cluster.dashboard_url, "--working-dir", str(workdir),
            "--runtime-env-json", json.dumps({"env_vars": {"PYTHONPATH": str(ROOT)}})]
    out = cluster.run(*args, *([] if wait else ["--no-wait"]), "--", "python", "-m", "sweep", *sweep_args,
                      "--address", "auto", timeout=600, check=False)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return out.stdout


def checkpoints(exp: str) -> dict[str, list[str]]:
    return {t: [c for c in storage.children(storage.join(exp, t)) if c.startswith("checkpoint_")]
            for t in storage.children(exp) if "-fashion_mnist-" in t}


def wait_for(what, cluster: LocalCluster, job: str, timeout: float, every: float = 0.5) -> None:
    """Until ``what()``; fails with the job's log if the job ends first or ``timeout`` passes."""
    job_id = re.search(r"raysubmit_\w+", job).group(0)
    deadline = time.monotonic() + timeout
    while not what():
        state = cluster.run(ray_binary(), "job", "status", job_id, check=False).stdout
        if time.monotonic() > deadline or re.search(r"(SUCCEEDED|FAILED|STOPPED)", state):
            logs = cluster.run(ray_binary(), "job", "logs", job_id, check=False)
            pytest.fail(f"{state.strip()[-300:]}\n{(logs.stdout + logs.stderr)[-3000:]}")
        time.sleep(every)


def every_epoch_once(exp: str, out: Path, trials: int) -> pd.DataFrame:
    assert main(["export", exp, "-o", str(out)]) == 0
    t = pd.read_parquet(out)
    assert t.trial_id.nunique() == trials
    assert (t.groupby("trial_id").status.first() == "TERMINATED").all()
    assert t.groupby("trial_id").epoch.apply(list).map(lambda e: e == list(range(1, EPOCHS + 1))).all()
    return t


@pytest.fixture
def cluster_env(s3_server, fashion_available, monkeypatch):
    """The nodes' environment: the S3 endpoint and credentials file (s3_server put them in
    os.environ), and the data cache; no RAY_ADDRESS of the test session's own Ray."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return os.environ


def test_sweep_as_a_job_survives_a_worker_loss_and_reads_back_from_outside(cluster_env, tmp_path, capsys):
    spec = spec_file(tmp_path, "nodes")
    exp = "s3://gap/cluster/nodes"
    with LocalCluster(workers=2, cpus_per_worker=1) as cluster:
        job = submit(cluster, spec.parent, "run", spec.name, "--storage", "s3://gap/cluster", wait=False)
        wait_for(lambda: storage.exists(exp) and any(checkpoints(exp).values()), cluster, job, timeout=180)
        cluster.kill_worker(0)  # mid-sweep: its trial fails and Tune runs it again on worker-1
        job_id = re.search(r"raysubmit_\w+", job).group(0)
        logs = cluster.run(ray_binary(), "job", "logs", "--follow", "--address", cluster.dashboard_url,
                           job_id, timeout=600).stdout
        assert "3 trials: 3 TERMINATED" in logs
        assert cluster.alive_workers() == ["worker-1"]
        # the gap split as Ray tasks on the cluster (the head has no CPU: they run on the worker),
        # asked for from outside it
        evaluate = cluster.run(sys.executable, "-m", "sweep", "evaluate", exp, "--points", "5",
                               "--iwae-samples", "10", "--address", cluster.address, timeout=300,
                               env={"PYTHONPATH": str(ROOT)})
        assert "3 trials evaluated now" in evaluate.stdout
    assert main(["status", exp]) == 0
    assert "3 trials: 3 TERMINATED" in capsys.readouterr().out
    every_epoch_once(exp, tmp_path / "nodes.parquet", 3)
    assert analysis_main(["figures", exp, "-o", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "gap_table.md").exists()


def test_resume_on_a_new_head_finishes_a_sweep_whose_head_died(cluster_env, tmp_path):
    # 6,000 points: a trial takes about 15 s here, and the third waits for a free worker, so the head
    # is killed mid-sweep however fast the machine; at 400 points the sweep could finish (1 s a
    # trial) before Tune's first snapshot reached the bucket
    spec = spec_file(tmp_path, "headloss", n_train=6000)
    exp = "s3://gap/cluster/headloss"
    with LocalCluster(workers=2, cpus_per_worker=1) as first:
        job = submit(first, spec.parent, "run", spec.name, "--storage", "s3://gap/cluster", wait=False)
        wait_for(lambda: storage.exists(exp) and any(checkpoints(exp).values())
                 and any(n.startswith("experiment_state-") for n in storage.children(exp)), first, job,
                 timeout=180)
        first.kill_head()
    finished = [t for t, cks in checkpoints(exp).items() if "checkpoint_000007" in cks]
    assert len(finished) < 3, "the head died too late: every trial had finished"
    with LocalCluster(workers=2, cpus_per_worker=1) as second:
        out = submit(second, spec.parent, "resume", exp)
        assert "3 trials: 3 TERMINATED" in out
    every_epoch_once(exp, tmp_path / "headloss.parquet", 3)
