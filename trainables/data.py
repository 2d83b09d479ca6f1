"""n_train training images (the first, or a seeded random draw) and the first n_test test images
of a torchvision dataset, flattened to [0, 1] floats.

Sources, in order (the first that has the files wins):
  1. ``data_root`` given by the user, in torchvision's layout
     (``<root>/MNIST/raw``, ``<root>/FashionMNIST/raw``, ``<root>/cifar-10-batches-py``);
  2. FashionMNIST only: Debian's ``dataset-fashion-mnist`` files, gunzipped once into the cache;
  3. torchvision's own download into the cache (off when AMORTIZATION_GAP_NO_DOWNLOAD=1).
A file that is present but truncated or corrupt stops the search with an error naming it.
"""

from __future__ import annotations

import gzip
import math
import os
import shutil
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_TV_NAMES = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "CIFAR10"}  # torchvision's
DATA_DIM = {"mnist": 784, "fashion_mnist": 784, "cifar10": 3072}
_IDX_ITEMSIZE = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _tv_class(name: str) -> type:
    """torchvision's dataset class; torchvision (3 s to import) loads when images are first read."""
    from torchvision import datasets

    return getattr(datasets, _TV_NAMES[name])


class DataUnavailableError(RuntimeError):
    """No source had the dataset's files."""


class DataFileError(RuntimeError):
    """A dataset file is present but truncated or corrupt."""


@dataclass
class Data:
    name: str
    x_train: torch.Tensor  # (n_train, D) float32 in [0, 1]
    x_test: torch.Tensor  # (n_test, D)
    source: str

    @property
    def dim(self) -> int:
        return self.x_train.shape[1]


def cache_dir() -> Path:
    return Path(os.environ.get("AMORTIZATION_GAP_CACHE", "~/.cache/amortization-gap")).expanduser()


def load(
    name: str,
    n_train: int,
    n_test: int,
    data_root: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    debian_dir: Path = DEBIAN_FASHION_MNIST,
    download: bool | None = None,
    subset: str = "first",
    seed: int = 0,
) -> Data:
    """Load ``name`` from the first source that has it; see the module docstring.

    subset "random": the n_train training images are a random draw, in random order, made with
    ``seed`` (Margossian & Blei's code took the first batch of a shuffled loader)."""
    if name not in _TV_NAMES:
        raise ValueError(f"dataset={name!r} is not one of {', '.join(_TV_NAMES)}")
    if download is None:
        download = os.environ.get("AMORTIZATION_GAP_NO_DOWNLOAD", "") in ("", "0")
    tried = []
    for label, open_split in _sources(name, data_root, debian_dir, download):
        try:
            train, test = open_split(True), open_split(False)
        except _Missing as e:
            tried.append(f"{label} ({e})")
            continue
        x_train = _images(name, train, n_train, "training", subset, seed)
        x_test = _images(name, test, n_test, "test")
        return Data(name, x_train.to(device), x_test.to(device), label)
    raise DataUnavailableError(
        f"dataset {name!r} not found; tried: " + "; ".join(tried) + ". " + _how_to_supply(name)
    )


class _Missing(Exception):
    pass


def _sources(name, data_root, debian_dir, download):
    if data_root is not None:
        root = Path(data_root).expanduser().resolve()
        yield f"data_root {root}", _opener(name, root, download=False)
    if name == "fashion_mnist":
        yield f"Debian files {debian_dir}", _debian_opener(debian_dir)
    dl_root = cache_dir() / "download"
    if download:
        yield f"torchvision download into {dl_root}", _opener(name, dl_root, download=True)
    else:
        yield "torchvision download", _raise_missing("off: AMORTIZATION_GAP_NO_DOWNLOAD is set")


def _raise_missing(why: str) -> Callable[[bool], object]:
    def fail(train: bool) -> object:
        raise _Missing(why)

    return fail


# Splits already parsed in this process, newest last: a Ray worker reused for trial after trial
# (reuse_actors) parses a dataset once, not per trial (torchvision's IDX parser took half of each
# worker's time in a sweep of 1,000 tiny trials: docs/engineering.md, "Thousands of trials"). Keyed
# by the files' paths, sizes and modification times, so a file replaced on disk is read again.
_PARSED: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_PARSED_MAX = 4  # two datasets' two splits: MNIST's training images are 47 MB, CIFAR-10's 150 MB


def _files_key(name: str, root: Path) -> tuple:
    folder = root / _tv_class(name).base_folder if name == "cifar10" else root / _TV_NAMES[name] / "raw"
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    return tuple((str(f), st.st_size, st.st_mtime_ns) for f in files if (st := f.stat()) and f.is_file())


def _opener(name: str, root: Path, download: bool) -> Callable[[bool], object]:
    def open_split(train: bool) -> object:
        if not download and not _present(name, root):
            raise _Missing("no files")
        key = (name, train, _files_key(name, root))
        if key in _PARSED:
            _PARSED.move_to_end(key)
            return SimpleNamespace(data=_PARSED[key])
        try:
            ds = _tv_class(name)(root=str(root), train=train, download=download)
        except Exception as e:  # torchvision raises RuntimeError, AssertionError, URLError...
            problem = _corruption(name, root)
            if problem:
                raise DataFileError(f"dataset {name!r}: {problem}") from None
            raise _Missing(f"{type(e).__name__}: {' '.join(str(e).split())}") from None
        if download:  # the key again: the download just wrote the files
            key = (name, train, _files_key(name, root))
        _PARSED[key] = torch.as_tensor(ds.data)
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
        return SimpleNamespace(data=_PARSED[key])

    return open_split


def _debian_opener(debian_dir: Path) -> Callable[[bool], object]:
    def open_split(train: bool) -> object:
        gz = sorted(debian_dir.glob("*-ubyte.gz")) if debian_dir.is_dir() else []
        if len(gz) < 4:
            raise _Missing("no files; apt-get install dataset-fashion-mnist")
        root = cache_dir() / "debian"
        raw = root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True, exist_ok=True)
        for src in gz:
            dst = raw / src.name[: -len(".gz")]
            if not dst.exists():  # unpack once, atomically, so a crash leaves no half file
                tmp = dst.with_suffix(f".tmp{os.getpid()}")
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                tmp.replace(dst)
        return _opener("fashion_mnist", root, download=False)(train)

    return open_split


def _present(name: str, root: Path) -> bool:
    if name == "cifar10":
        return (root / _tv_class(name).base_folder).is_dir()
    raw = root / _TV_NAMES[name] / "raw"
    return raw.is_dir() and any(raw.glob("*-ubyte"))


def _corruption(name: str, root: Path) -> str | None:
    """Name the first truncated or corrupt file under ``root``, if any."""
    if name == "cifar10":
        from torchvision.datasets.utils import check_integrity

        cls = _tv_class(name)
        folder = root / cls.base_folder
        for fname, md5 in cls.train_list + cls.test_list:
            path = folder / fname
            if path.exists() and not check_integrity(str(path), md5):
                return f"{path} is truncated or corrupt (MD5 differs from CIFAR-10's)"
        return None
    raw = root / _TV_NAMES[name] / "raw"
    for path in sorted(raw.glob("*-ubyte")):
        problem = _idx_problem(path)
        if problem:
            return f"{path} is truncated or corrupt ({problem})"
    return None


def _idx_problem(path: Path) -> str | None:
    """Check an IDX file's size against its header (LeCun's format: magic, dims, data)."""
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_ITEMSIZE:
            return "not an IDX file: bad magic number"
        ndim = head[3]
        dims_bytes = f.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        return "header cut short"
    dims = struct.unpack(f">{ndim}I", dims_bytes)
    expected = 4 + 4 * ndim + math.prod(dims) * _IDX_ITEMSIZE[head[2]]
    size = path.stat().st_size
    return None if size == expected else f"{size} bytes where its header promises {expected}"


def load_for(cfg, device: str | torch.device = "cpu") -> Data:
    """The images a TrialConfig trains and tests on."""
    return load(cfg.dataset, cfg.n_train, cfg.n_test, cfg.data_root, device,
                subset=cfg.train_subset, seed=cfg.seed)


def _images(
    name: str, ds: object, n: int, split: str, subset: str = "first", seed: int = 0
) -> torch.Tensor:
    data = torch.as_tensor(ds.data)  # MNIST: (N, 28, 28) uint8; CIFAR-10: (N, 32, 32, 3) uint8
    if n > data.shape[0]:
        raise ValueError(f"{name} has {data.shape[0]} {split} images; asked for {n}")
    if subset == "random":
        data = data[torch.randperm(data.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    elif subset == "first":
        data = data[:n]
    else:
        raise ValueError(f"subset={subset!r} is not one of first, random")
    if data.ndim == 4:
        data = data.permute(0, 3, 1, 2)  # channels first, the order of torchvision's ToTensor
    return data.reshape(n, -1).to(torch.float32).div_(255.0)


def _how_to_supply(name: str) -> str:
    folder = {
        "mnist": "MNIST/raw/ (train-images-idx3-ubyte, ...)",
        "fashion_mnist": "FashionMNIST/raw/ (train-images-idx3-ubyte, ...)",
        "cifar10": "cifar-10-batches-py/ (data_batch_1..5, test_batch)",
    }[name]
    hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion_mnist" else ""
    return (f"Put the files under DIR/{folder} and pass data_root=DIR (a sweep: --set "
            f"train.data_root=DIR; python -m trainables: --data-root DIR){hint}.")
