"""A real multi-node Ray cluster on this machine (testbed/cluster.py): a 0-CPU head and 1-CPU
workers started by `ray start`, token auth, `ray job submit`, a node's loss, and autoscaling with
Ray's fake multi-node provider. Real processes, no mocks; every client is a separate process with
the cluster's env(), as a user's would be. Runs alone: `pytest -m cluster tests/test_cluster.py`.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")

from testbed.cluster import (  # noqa: E402 (after the skip: it needs psutil)
    ClusterError,
    FakeAutoscalingCluster,
    LocalCluster,
    active_nodes,
    free_ports,
    marked_processes,
    ray_binary,
)

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[1]
NEEDS_DASHBOARD = pytest.mark.skipif(
    importlib.util.find_spec("aiohttp") is None,
    reason="the dashboard and `ray job` need ray[default]: pip install 'ray[default]'")


def client(cluster: LocalCluster, code: str, timeout: float = 90) -> dict:
    """Run ``code`` as a driver of ``cluster`` in its own process; its last stdout line, as JSON."""
    done = subprocess.run([sys.executable, "-c", code], env=cluster.env(), capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def poll_status(cluster: LocalCluster, done, timeout: float, every: float = 0.5) -> list[tuple[float, dict]]:
    """`ray status` again and again until ``done(active node counts)``; every (seconds, counts) seen."""
    seen, start = [], time.monotonic()
    while True:
        counts = active_nodes(cluster.status())
        seen.append((round(time.monotonic() - start, 1), counts))
        if done(counts):
            return seen
        assert time.monotonic() - start < timeout, f"`ray status` after {timeout} s: {seen}"
        time.sleep(every)


WHERE = """
import json, time, ray
ray.init(log_to_driver=False)
head = [n["NodeID"] for n in ray.nodes() if n["Alive"] and "node:__internal_head__" in n["Resources"]]

@ray.remote(num_cpus=1)
def where(seconds=0.0):
    time.sleep(seconds)
    return ray.get_runtime_context().get_node_id()

@ray.remote(num_cpus=1)
class Where:
    def node(self):
        return ray.get_runtime_context().get_node_id()
"""


@pytest.mark.slow
def test_head_without_cpus_runs_nothing_and_survives_a_worker_loss(monkeypatch, tmp_path):
    home = tmp_path / "home"  # HOME elsewhere: the cluster must not read or write ~/.ray/auth_token
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with LocalCluster(workers=2, cpus_per_worker=1) as cluster:
        assert sum(poll_status(cluster, lambda c: sum(c.values()) == 3, timeout=30)[-1][1].values()) == 3

        placed = client(cluster, WHERE + """
tasks = ray.get([where.remote(0.5) for _ in range(4)])
actor = ray.get(Where.remote().node.remote())
print(json.dumps({"head": head, "tasks": tasks, "actor": actor}))
""")
        assert len(placed["head"]) == 1
        assert placed["head"][0] not in placed["tasks"] + [placed["actor"]]
        assert len(set(placed["tasks"])) == 2, "4 tasks of 1 CPU on two 1-CPU workers: both run some"

        # a node's loss mid-run: its raylet SIGKILLed while the driver's tasks run there
        survivor = cluster.workers[1]
        driver = subprocess.Popen([sys.executable, "-c", WHERE + """
import sys
refs = [where.remote(4) for _ in range(4)]
print("submitted", flush=True)
done = ray.get(refs, timeout=90)   # tasks retry (max_retries=3) on the surviving worker
after = ray.get([where.remote() for _ in range(3)], timeout=60)
alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
print(json.dumps({"done": done, "after": after, "alive": alive}))
"""], env=cluster.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert driver.stdout.readline().strip() == "submitted"
        time.sleep(2)  # the first two tasks are running, one on each worker
        cluster.kill_worker(0)
        assert not cluster.processes("worker-0"), "kill_worker leaves none of that node's processes"
        assert cluster.alive_workers() == [survivor]
        out, err = driver.communicate(timeout=120)
        assert driver.returncode == 0, err[-2000:]
        result = json.loads(out.strip().splitlines()[-1])
        assert len(result["done"]) == 4
        assert len(set(result["after"])) == 1 and result["after"][0] in result["alive"]
        assert len(result["alive"]) == 2  # the head and the survivor

        cluster.kill_head()
        assert not cluster.processes("head")
        cluster_id = cluster.id
    assert marked_processes(cluster_id) == [], "stop() ends every process the cluster started"
    assert not (home / ".ray").exists(), "the cluster's token is its own file, not ~/.ray/auth_token"


@pytest.mark.slow  # a cluster with a dashboard: a minute; `ray job submit` in make test: test_cluster_sweep
@NEEDS_DASHBOARD
def test_ray_job_submit_with_a_working_dir(tmp_path):
    workdir = tmp_path / "job"
    workdir.mkdir()
    (workdir / "payload.py").write_text("ANSWER = 42\n")
    with LocalCluster(workers=1, cpus_per_worker=1) as cluster:
        entry = ("import ray, payload; ray.init(); "
                 "n = ray.get(ray.remote(num_cpus=1)(lambda: payload.ANSWER).remote()); "
                 "print('job says', n, len(ray.nodes()), 'nodes')")
        ray = ray_binary()
        submit = cluster.run(ray, "job", "submit", "--address", cluster.dashboard_url, "--submission-id",
                             "cluster-test-1", "--working-dir", str(workdir), "--", "python", "-c", entry,
                             timeout=110)
        assert "succeeded" in submit.stdout + submit.stderr
        logs = cluster.run(ray, "job", "logs", "--address", cluster.dashboard_url, "cluster-test-1")
        assert "job says 42 2 nodes" in logs.stdout

        # the dashboard itself refuses a request without the cluster's token (Ray's token auth)
        jobs = urllib.request.Request(f"{cluster.dashboard_url}/api/jobs/")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(jobs, timeout=30)
        jobs.add_header("Authorization", f"Bearer {cluster.token_path.read_text()}")
        with urllib.request.urlopen(jobs, timeout=30) as answer:
            assert "cluster-test-1" in answer.read().decode()


@pytest.fixture(scope="module")
def autoscaling(s3_server):
    """cluster.yaml's node types under the fake provider: up to 2 gpu_workers of 1 CPU and 1 GPU,
    a simulated GPU (testbed/simulated_gpu on the nodes' PYTHONPATH, with the S3 server's
    variables in their environment, which the nodes the autoscaler launches inherit from the head)."""
    with FakeAutoscalingCluster(ROOT / "cluster.yaml", max_workers=2, cpus=1, gpus=1) as cluster:
        yield cluster


@pytest.mark.slow
def test_autoscaler_adds_workers_as_trials_queue_and_removes_them_idle(autoscaling, fashion_available,
                                                                        tmp_path):
    """The smoke sweep, trials of 1 CPU and half a GPU, on a head with no CPU and no worker: the
    autoscaler launches cluster.yaml's gpu_worker nodes for the queued trials, up to 2, and removes
    them once idle; every trial finishes on them."""
    import yaml

    assert active_nodes(autoscaling.status()) == {"ray.head.default": 1}
    raw = yaml.safe_load((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())
    raw.update(name="autoscale", resources={"cpu": 1, "gpu": 0.5})
    spec = tmp_path / "autoscale.yaml"
    spec.write_text(yaml.safe_dump(raw))
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", str(spec), "--address", autoscaling.address,
         "--storage", "s3://gap/autoscale"],
        env={**autoscaling.env(), "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    up = poll_status(autoscaling, lambda c: c.get("gpu_worker", 0) == 2, timeout=120)
    out, err = driver.communicate(timeout=400)
    assert driver.returncode == 0, (out + err)[-3000:]
    assert out.strip().endswith("8 trials: 8 TERMINATED")
    down = poll_status(autoscaling, lambda c: "gpu_worker" not in c, timeout=90, every=2)
    print("scale-up", up, "\nscale-down", down)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
@pytest.mark.slow
def test_gpu_fractions_share_a_simulated_gpu_that_torch_cannot_use(autoscaling):
    """The fake node advertises GPU: 1, so two 0.5-GPU trials share one node and Ray hands both
    GPU 0 (CUDA_VISIBLE_DEVICES=0); torch, on a machine without CUDA, sees no device at all: a
    trial must choose its device by torch.cuda.is_available(), not by ray.get_gpu_ids()."""
    got = client(autoscaling, """
import json, os, ray
ray.init(log_to_driver=False)

@ray.remote(num_cpus=0.5, num_gpus=0.5)
def trial():
    import time, torch
    time.sleep(2)
    return [ray.get_runtime_context().get_node_id(), ray.get_gpu_ids(),
            os.environ.get("CUDA_VISIBLE_DEVICES"), torch.cuda.is_available()]

print(json.dumps(ray.get([trial.remote() for _ in range(2)], timeout=100)))
""", timeout=120)
    import torch

    assert got[0][0] == got[1][0], "two half-GPU trials packed onto one fake GPU node"
    # where this machine has CUDA, the fake node's GPU 0 is its real GPU 0
    assert [g[1:] for g in got] == [[[0], "0", torch.cuda.is_available()]] * 2


def test_a_port_in_use_is_named():
    import socket

    with socket.socket() as held:
        port = free_ports(1)[0]
        held.bind(("", port))
        held.listen()
        with pytest.raises(ClusterError, match=f"port {port} is in use"):
            FakeAutoscalingCluster(ROOT / "cluster.yaml", port=port).start()


def wait_note(cluster: LocalCluster, tmp_path: Path, resources: dict, timeout: float = 150,
              ) -> tuple[str, int]:
    """The smoke sweep on ``cluster`` asking ``resources`` per trial, which no node offers: its output
    until the display's waiting note, then a SIGINT (Tune saves its state and stops); (output, exit)."""
    import signal

    import yaml

    raw = yaml.safe_load((ROOT / "sweep" / "specs" / "smoke.yaml").read_text())
    raw.update(name="unplaceable", resources=resources)
    spec = tmp_path / "unplaceable.yaml"
    spec.write_text(yaml.safe_dump(raw))
    driver = subprocess.Popen(
        [sys.executable, "-m", "sweep", "run", str(spec), "--address", cluster.address,
         "--storage", str(tmp_path / "res")],
        env={**cluster.env(), "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines, deadline = [], time.monotonic() + timeout
    for line in driver.stdout:  # the display prints every 30 s to a pipe
        lines.append(line)
        if line.startswith("waiting:") or time.monotonic() > deadline:
            break
    driver.send_signal(signal.SIGINT)
    rest, _ = driver.communicate(timeout=120)
    return "".join(lines) + rest, driver.returncode


@pytest.mark.slow
def test_trials_no_node_can_take_are_named_while_they_wait(tmp_path):
    with LocalCluster(workers=1, cpus_per_worker=1) as cluster:
        out, code = wait_note(cluster, tmp_path, {"cpu": 1, "gpu": 0.5})
    assert ("waiting: no node offers what a trial asks (resources.gpu=0.5 per trial, at most 0 GPU on a "
            "node; 2 nodes); no autoscaler runs, so none will come") in out, out[-3000:]
    assert "No available node types" not in out and "No trial is running" not in out  # Ray's, muted
    assert code == 1 and "stopped early, its state saved: python -m sweep resume" in out


@pytest.mark.slow
def test_the_waiting_note_says_the_autoscaler_cannot_add_what_no_node_type_has(autoscaling, tmp_path):
    out, code = wait_note(autoscaling, tmp_path, {"cpu": 4, "gpu": 0})
    assert ("waiting: no node offers what a trial asks (resources.cpu=4 per trial, at most 0 CPU on a node; "
            "1 node); the autoscaler adds none: none of its node types offers it") in out, out[-3000:]
    assert "No available node types" not in out
    assert code == 1
