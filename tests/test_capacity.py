"""A spec that asks for what the machines lack: refused in one line on a local Ray (known answers
first, then a real `python -m sweep run` on this GPU-less machine), and named while trials wait on
a cluster (tests/test_cluster.py runs that on real `ray start` nodes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from sweep.capacity import local_refusal, request, shortfall, waiting_note

ROOT = Path(__file__).resolve().parents[1]
LAPTOP = {"CPU": 2.0, "memory": 8e9}
GPU_BOX = {"CPU": 16.0, "GPU": 1.0}


@pytest.mark.parametrize("asked, nodes, missing", [
    ({"CPU": 1}, [LAPTOP], {}),
    ({"CPU": 1, "GPU": 0.5}, [LAPTOP], {"GPU": 0}),
    ({"CPU": 4}, [LAPTOP], {"CPU": 2}),
    ({"CPU": 4}, [LAPTOP, {"CPU": 3}], {"CPU": 3}),          # the most any one node offers
    ({"CPU": 4}, [{"CPU": 3}, {"CPU": 3}], {"CPU": 3}),      # 6 in all, but a trial is one node's
    ({"CPU": 1, "GPU": 1}, [LAPTOP, {"CPU": 0, "GPU": 4}], {"CPU": 2, "GPU": 4}),  # never together
    ({"CPU": 1, "GPU": 1}, [LAPTOP, GPU_BOX], {}),
    ({"CPU": 1}, [], {"CPU": 0}),
])
def test_shortfall_is_what_no_single_node_offers(asked, nodes, missing):
    assert shortfall(asked, nodes) == missing


def test_request_names_only_what_a_trial_asks_for():
    assert request(1, 0) == {"CPU": 1}
    assert request(2, 0.25) == {"CPU": 2, "GPU": 0.25}


def test_a_local_refusal_names_the_setting_and_the_fix():
    gpu = local_refusal(request(1, 0.5), LAPTOP)
    assert gpu.startswith("resources.gpu=0.5 asks for a GPU per trial, but Ray sees 0 GPUs on this machine")
    assert "--set resources.gpu=0" in gpu and "--address" in gpu
    cpu = local_refusal(request(4, 0), LAPTOP)
    assert cpu.startswith("resources.cpu=4 asks each trial for more than this machine has (2 CPU)")
    assert "--set resources.cpu=2 or less" in cpu
    assert "resume it where GPUs are" in local_refusal(request(1, 1), LAPTOP, verb="resume")
    assert local_refusal(request(2, 0), LAPTOP) is None
    assert local_refusal(request(1, 0.25), GPU_BOX) is None


def test_the_waiting_note_says_whether_anything_will_come():
    asked = request(1, 0.5)
    assert waiting_note(asked, [LAPTOP, GPU_BOX], None) is None  # some node fits: busy, not stuck
    plain = waiting_note(asked, [{"CPU": 0}, LAPTOP], None)
    assert plain.startswith("waiting: no node offers what a trial asks (resources.gpu=0.5 per trial, "
                            "at most 0 GPU on a node; 2 nodes)")
    assert "no autoscaler runs" in plain
    assert "is starting 2 node(s)" in waiting_note(asked, [LAPTOP], {"pending": 2, "node_types": None})
    assert "can add one (gpu)" in waiting_note(asked, [LAPTOP], {"pending": 0, "node_types": {
        "cpu": {"CPU": 8}, "gpu": {"CPU": 8, "GPU": 1}}})
    assert "adds none: none of its node types" in waiting_note(asked, [LAPTOP], {
        "pending": 0, "node_types": {"cpu": {"CPU": 8}}})


def _raylets() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name"]) if p.info["name"] == "raylet"}


def laptop_lines() -> list[str]:
    """The bash block of docs/guide.md's "A laptop, or one machine", comments dropped."""
    guide = (ROOT / "docs" / "guide.md").read_text()
    section = guide.split("### A laptop, or one machine", 1)[1].split("\n### ", 1)[0]
    [block] = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [ln.split("  #")[0].strip() for ln in block.splitlines() if ln.strip()]


def checkout_copy(tmp: Path) -> Path:
    """A folder where the guide's relative paths resolve (sweep/, .venv) and results land (./results)."""
    here = tmp / "checkout"
    here.mkdir()
    for name in ("sweep", ".venv"):
        (here / name).symlink_to(ROOT / name)
    return here


def run_line(line: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # a fresh local Ray, as a user's
    return subprocess.run(line, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_a_gpu_spec_on_a_machine_without_gpus_exits_at_once_in_one_line(fashion_available, tmp_path):
    """The guide's line, as written, on this machine without a GPU: the sweep must not wait forever
    (Ray would print 'No available node types...' every 35 s)."""
    refused = laptop_lines()[0]
    assert refused.endswith("sweep run sweep/specs/smoke.yaml --set resources.gpu=0.5")
    here, before = checkout_copy(tmp_path), _raylets()
    start = time.monotonic()
    done = run_line(refused, here)
    took = time.monotonic() - start
    # refused before any trial waited for a GPU: Ray's "No available node types" never printed (every
    # 35 s while a trial waits); the bound only catches a hang (its start and stop here: about 30 s)
    assert done.returncode == 2 and took < 120, (took, done.stderr[-2000:])
    assert "No available node types" not in done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
    assert errors == ["python -m sweep: error: resources.gpu=0.5 asks for a GPU per trial, but Ray sees "
                      "0 GPUs on this machine, so no trial would ever start: --set resources.gpu=0 trains "
                      "on the CPU, or run on a cluster with GPUs (--address)"]
    assert not (here / "results").exists()  # nothing claimed, nothing written
    assert _raylets() <= before  # its local Ray is gone with it


GIVEN_A_GPU = """
import ray, torch
ray.get_gpu_ids = lambda: [0]  # Ray gave this task GPU 0
torch.cuda.is_available = lambda: False  # and torch sees none
from sweep.trainable import task_device
print(task_device())
"""


@pytest.mark.parametrize("simulated", [False, True])
def test_a_gpu_torch_cannot_see_is_an_error_but_on_a_simulated_gpu_node(simulated):
    """A GPU Ray assigned that torch cannot see fails the trial in one line (a node with a broken
    driver must not train on its CPU); on the fake autoscaler's nodes, whose GPUs are claims
    (testbed/simulated_gpu on their PYTHONPATH), the trial runs on the CPU and says so."""
    from testbed.cluster import simulated_gpu_path

    path = simulated_gpu_path(str(ROOT)) if simulated else str(ROOT)
    done = subprocess.run([sys.executable, "-c", GIVEN_A_GPU], env={**os.environ, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=120)
    if simulated:
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.splitlines() == ["Ray gave this task GPU [0], a simulated one: running on the CPU",
                                            "cpu"]
    else:
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == (
            "RuntimeError: Ray gave this task GPU [0] but torch sees no CUDA device (no driver?)")


@pytest.mark.slow
def test_the_same_spec_on_the_cpu_runs_as_the_guide_says(fashion_available, tmp_path):
    on_cpu = laptop_lines()[1]
    assert on_cpu.endswith("sweep run sweep/specs/smoke.yaml --set resources.gpu=0")
    done = run_line(on_cpu, here := checkout_copy(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("8 trials: 8 TERMINATED")
    assert (here / "results" / "smoke" / "sweep-spec.json").exists()
