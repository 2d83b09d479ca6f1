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
