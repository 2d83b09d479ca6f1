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
    """A real S3 server (SeaweedFS's `weed`, testbed/s3.py) on free loopback ports for the
    whole session, with a bucket "gap"; its endpoint and keys in the standard AWS variables of this
    process, so the session's Ray nodes, started after it, and every command inherit them."""
    from testbed.s3 import S3Server

    yield from _bucket_server(S3Server(tmp_path_factory.mktemp("s3")))


def _bucket_server(server):
    """``server`` started for the session with a bucket "gap", the variables a client needs to reach
    it set in this process's environment until it stops."""
    mp = pytest.MonkeyPatch()
    with server:
        server.create_bucket("gap")
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server
        mp.undo()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory):
    """A real GCS server (fake-gcs-server, testbed/gcs.py) on a free loopback port for the whole
    session, with a bucket "gap"; its endpoint and key file in Google's standard variables of this
    process, as s3_server's. None where the emulator is not installed: the Ray tests still run, and
    tests/test_gcs.py fails (CI=true) or skips."""
    from testbed.gcs import GcsServer, emulator_binary

    try:
        emulator_binary()
    except FileNotFoundError:
        yield None
        return
    yield from _bucket_server(GcsServer(tmp_path_factory.mktemp("gcs")))


@pytest.fixture(scope="session")
def ray_address(s3_server, gcs_server):
    """One local Ray for the whole session (2 CPUs, no dashboard); yields its address. Started
    after the S3 and GCS servers: its workers write checkpoints to the buckets with the same
    credentials, as a cluster's nodes have theirs from their own environment."""
    import ray

    # address "local": a new instance, never a cluster left running on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


# The smoke spec as the shared experiment runs it: evaluated at the end (gap.json per trial) and
# tracked in MLflow, so one sweep serves the tests of run, status, export, evaluate, figures and
# tracking. Tests that write into it work on a copy (`smoke_copy`).
SMOKE_EXTRA = {"evaluate": {"points": 40, "iwae_samples": 32}, "tracking": {"mlflow": {}}}


@pytest.fixture(scope="session")
def smoke_run(ray_address, fashion_available, tmp_path_factory):
    """A real `python -m sweep run` of sweep/specs/smoke.yaml (+ SMOKE_EXTRA), its output a pipe, on
    the session's Ray: (exit code, experiment directory, what it printed). Read-only for tests."""
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parents[1]
    work = tmp_path_factory.mktemp("smoke")
    spec = work / "smoke.yaml"
    spec.write_text(yaml.safe_dump({**yaml.safe_load((root / "sweep" / "specs" / "smoke.yaml").read_text()),
                                    **SMOKE_EXTRA}))
    storage = work / "storage"
    out = subprocess.run(
        [sys.executable, "-m", "sweep", "run", str(spec), "--storage", str(storage),
         "--address", ray_address],
        capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(root)},
    )
    return out.returncode, storage / "smoke", out


@pytest.fixture(scope="session")
def smoke_experiment(smoke_run):
    """(exit code, experiment directory) of the smoke run."""
    return smoke_run[:2]


@pytest.fixture
def smoke_copy(smoke_experiment, tmp_path) -> Path:
    """A copy of the smoke experiment for a test that writes into it."""
    import shutil

    rc, exp = smoke_experiment
    assert rc == 0
    return Path(shutil.copytree(exp, tmp_path / "smoke"))


# A researcher's own family, in a module outside the project (tests/test_user_family.py).
USER_FAMILY = '''
"""One hidden layer instead of two: a family of the user's own, in one file."""
import torch
from torch import nn

from trainables.families import Family, register


@register
class OneLayer(Family):
    """q(z_n) = N(mu(x_n), diag exp(logvar(x_n))) from an encoder with one hidden layer of width k."""

    name, label, order = "one_layer", "one-layer", 50
    has_width, refinable = True, True

    def __init__(self, data_dim, width, latent_dim):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(data_dim, width), nn.Tanh())
        self.head = nn.Linear(width, 2 * latent_dim)

    @classmethod
    def from_config(cls, cfg, n_data, data_dim):
        return cls(data_dim, cfg.width, cfg.latent_dim)

    def forward(self, x, idx=None):
        return self.head(self.body(x)).chunk(2, dim=-1)
'''

# Two axes and the user's family in one sweep (tests/test_axes.py, tests/test_user_family.py):
# 3 variants x n_train x sigma_x = 12 trials of 2 epochs, evaluated at the end.
AXES_SPEC = {
    "name": "axes", "datasets": ["fashion_mnist"], "families": ["amortized", "one_layer", "factorized"],
    "widths": [2], "seeds": [0], "grid": {"n_train": [100, 200], "sigma_x": [0.3, 0.5]},
    "train": {"n_test": 50, "epochs": 2, "batch_size": 50, "theta_init": "torch", "lr": 0.003},
    "report_every": 1, "checkpoint_every": 2, "test_inference": False,
    "evaluate": {"points": 10, "iwae_samples": 10, "eval_samples": 2, "refine_steps": [0, 2]},
}


@pytest.fixture(scope="session")
def axes_experiment(ray_address, fashion_available, tmp_path_factory):
    """The AXES_SPEC sweep, its family module written outside the project: (experiment directory,
    the module)."""
    import yaml

    from sweep.cli import main

    tmp = tmp_path_factory.mktemp("axes")
    module = tmp / "elsewhere" / "my_family.py"
    module.parent.mkdir()
    module.write_text(USER_FAMILY)
    (tmp / "s.yaml").write_text(yaml.safe_dump({**AXES_SPEC, "family_modules": [str(module)]}))
    assert main(["run", str(tmp / "s.yaml"), "--storage", str(tmp / "res")]) == 0
    return tmp / "res" / "axes", module


@pytest.fixture(scope="session")
def axes_report(axes_experiment, tmp_path_factory):
    """`python -m analysis figures` of the axes experiment: its output directory."""
    from analysis.cli import main

    out = tmp_path_factory.mktemp("axes-report") / "out"
    assert main(["figures", str(axes_experiment[0]), "-o", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def slurm():
    """A real Slurm cluster on this machine (testbed/slurm.py: munged, slurmctld and three `slurmd
    -N` nodes of one CPU, on free ports, under a temporary folder) for the whole session; stopping
    it ends only its own daemons and what its jobs started. Without Slurm installed: a one-line
    skip, or a failure with CI=true (`make` installs it where apt is usable). GAP_SLURM_ROOT (a short
    path) keeps the cluster's folder, its daemons' logs included, after the session."""
    from testbed.slurm import INSTALL, SlurmCluster, missing_commands

    if missing := missing_commands():
        msg = f"no {', '.join(missing)} on this machine: {INSTALL}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    with SlurmCluster(os.environ.get("GAP_SLURM_ROOT"), nodes=3, cpus=1) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium (testbed/browser.py: Debian's chromium and chromium-driver, offline) for
    the whole session. Without them: a one-line skip, or a failure with CI=true (`make` installs
    them where apt is usable)."""
    from testbed.browser import INSTALL, Browser, missing_binaries

    if missing := missing_binaries():
        msg = f"no {', '.join(missing)} on this machine: {INSTALL}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    with Browser() as chromium:
        yield chromium
