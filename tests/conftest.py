"""Shared fixtures: real Fashion-MNIST from Debian's package, offline data settings, helpers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from trainables.data import DEBIAN_FASHION_MNIST


@pytest.fixture(autouse=True, scope="session")
def _offline_cache(tmp_path_factory):
    """No downloads in tests; unpack Debian's files into a cache private to this session."""
    mp = pytest.MonkeyPatch()
    mp.setenv("AMORTIZATION_GAP_NO_DOWNLOAD", "1")
    mp.setenv("AMORTIZATION_GAP_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fashion_available() -> Path:
    """Real Fashion-MNIST (Debian's dataset-fashion-mnist). With CI=true its absence fails."""
    if not (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        msg = f"real Fashion-MNIST missing at {DEBIAN_FASHION_MNIST}: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return DEBIAN_FASHION_MNIST


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (SeaweedFS's `weed`, sweep/localcloud.py) on free loopback ports for the
    whole session, with a bucket "gap"; its endpoint and keys in the standard AWS variables of this
    process, so the session's Ray nodes, started after it, and every command inherit them."""
    from sweep.localcloud import S3Server

    mp = pytest.MonkeyPatch()
    with S3Server(tmp_path_factory.mktemp("s3")) as server:
        server.create_bucket("gap")
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server
        mp.undo()


@pytest.fixture(scope="session")
def ray_address(s3_server):
    """One local Ray for the whole session (2 CPUs, no dashboard); yields its address. Started
    after the S3 server: its workers write checkpoints to the bucket with the same credentials, as
    a cluster's nodes have theirs from their own environment."""
    import ray

    # address "local": a new instance, never a cluster left running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def smoke_run(ray_address, fashion_available, tmp_path_factory):
    """A real `python -m sweep run sweep/specs/smoke.yaml`, its output a pipe, on the session's Ray:
    (exit code, experiment directory, what it printed)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    storage = tmp_path_factory.mktemp("storage")
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(root / "sweep" / "specs" / "smoke.yaml"), "--storage",
         str(storage), "--address", ray_address],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(root)},
    )
    return out.returncode, storage / "smoke", out


@pytest.fixture(scope="session")
def smoke_experiment(smoke_run):
    """(exit code, experiment directory) of the smoke run."""
    return smoke_run[:2]
