"""The cluster commands of docs/guide.md, run as written, in order, on this machine: `ray start`
nodes with token authentication, the sweep submitted as a Ray job, results on the suite's real S3
server, read back from outside the cluster. Only what would collide with a user's own Ray is
changed: free ports for 6379 and 8265 (and the ports Ray would otherwise take at fixed defaults), a
temp dir per node, a private HOME for the token. Every process started carries a mark, and only
those are killed."""

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from sweep import storage
from testbed.cluster import (
    MARK,
    free_ports,
    kill_processes,
    marked_processes,
    node_ip,
    own_env,
    short_tempdir,
)

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "guide.md").read_text()  # its "Where to run it" section


def cluster_section_commands() -> list[str]:
    """The shell lines of the "Where to run it" section's bash block that starts a cluster by hand."""
    section = GUIDE.split("## Where to run it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    [manual] = [b for b in blocks if "ray start --head" in b]
    return [ln.strip() for ln in manual.replace("\\\n", " ").splitlines() if ln.strip()]


def test_the_section_is_what_the_test_runs():
    lines = cluster_section_commands()
    assert lines[0] == "ray get-auth-token --generate"
    assert any("ray start --head --num-cpus 0" in ln for ln in lines)
    assert any("sweep run" in ln and "ray job submit" in ln for ln in lines)
    assert any("sweep resume" in ln and "ray job submit" in ln for ln in lines)


@pytest.mark.slow
@pytest.mark.cluster
def test_readme_cluster_commands_run_as_written(s3_server, fashion_available, tmp_path):
    gcs, dash, client, head_agent, worker_agent = free_ports(5)
    ip = node_ip()
    mark = secrets.token_hex(6)
    home = tmp_path / "home"
    home.mkdir()
    nodes = short_tempdir()  # Ray's socket paths must stay under 108 bytes: not under pytest's tmp_path
    env = {**own_env(), "HOME": str(home), MARK: mark, "PYTHONPATH": str(ROOT)}
    isolate = {  # appended to the guide's `ray start` lines: nothing at Ray's fixed defaults
        "--head": f" --dashboard-port {dash} --ray-client-server-port {client} "
                  f"--dashboard-agent-listen-port {head_agent} --temp-dir {nodes / 'h'}",
        "--address": f" --dashboard-agent-listen-port {worker_agent} --temp-dir {nodes / 'w'}",
    }
    outputs = []
    try:
        for line in cluster_section_commands():
            cmd = (line.replace("--port 6379", f"--port {gcs}").replace("HEAD_IP:6379", f"{ip}:{gcs}")
                   .replace("http://HEAD_IP:8265", f"http://127.0.0.1:{dash}")
                   .replace("s3://YOUR-BUCKET", "s3://gap/readme").replace("-o smoke-report",
                                                                        f"-o {tmp_path / 'smoke-report'}"))
            if " ray start " in f" {cmd} ":
                cmd += next(extra for flag, extra in isolate.items() if flag in cmd)
            done = subprocess.run(cmd, shell=True, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=600, start_new_session=True)
            assert done.returncode == 0, f"{line}\n{(done.stdout + done.stderr)[-3000:]}"
            outputs.append(done.stdout)
    finally:
        kill_processes(marked_processes(mark))
        shutil.rmtree(nodes, ignore_errors=True)
    assert (home / ".ray" / "auth_token").exists()  # the token the nodes share, in the private HOME
    run_job, status = outputs[3], outputs[4]
    assert "8 trials: 8 TERMINATED" in run_job and "8 trials: 8 TERMINATED" in status
    assert storage.exists("s3://gap/readme/gap/smoke.parquet")
    assert (tmp_path / "smoke-report" / "gap_table.md").exists()
    assert "8 trials: 8 TERMINATED" in outputs[-1]  # the resume job: nothing left to do


@pytest.fixture(autouse=True)
def _no_ambient_ray(monkeypatch):
    """Nothing of the session's own Ray reaches these commands."""
    for key in ("RAY_ADDRESS",):
        monkeypatch.delenv(key, raising=False)
    yield
    os.environ.pop(MARK, None)
