"""Loaders on small files in the real IDX and CIFAR-10 pickle formats, and on real Fashion-MNIST."""

import hashlib
import pickle
import struct

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from trainables.data import DataFileError, DataUnavailableError, load


def write_idx(path, arr):
    """LeCun's IDX: two zero bytes, type 0x08 (ubyte), ndim, big-endian dims, then the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    path.write_bytes(head + arr.astype(np.uint8).tobytes())


def write_mnist_like(root, folder, n_train=7, n_test=5, seed=0):
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    imgs = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        imgs[split] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", imgs[split])
        write_idx(raw / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, size=n, dtype=np.uint8))
    return imgs


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_loader_reads_real_format(tmp_path, name, folder):
    imgs = write_mnist_like(tmp_path, folder)
    data = load(name, 6, 4, data_root=tmp_path, debian_dir=tmp_path / "no-debian")
    assert data.x_train.shape == (6, 784) and data.x_test.shape == (4, 784)
    assert data.x_train.dtype == torch.float32
    want = torch.from_numpy(imgs["train"][:6].reshape(6, -1).astype(np.float32) / 255)
    assert torch.equal(data.x_train, want)
    assert data.source.startswith("data_root")


def test_a_process_parses_a_dataset_once_and_again_when_its_files_change(tmp_path, monkeypatch):
    """A Ray worker reused across trials parses the files once; a file replaced on disk is read anew."""
    import os

    import trainables.data as data_module

    parsed = []
    real = data_module._tv_class

    def counting(name):
        cls = real(name)
        return lambda **kw: parsed.append(kw["train"]) or cls(**kw)

    monkeypatch.setattr(data_module, "_tv_class", counting)
    imgs = write_mnist_like(tmp_path, "MNIST")
    first = load("mnist", 6, 4, data_root=tmp_path)
    again = load("mnist", 3, 5, data_root=tmp_path, subset="random", seed=1)  # other sizes, same files
    assert parsed == [True, False]  # each split parsed once
    assert torch.equal(again.x_train, first.x_train.new_tensor(
        imgs["train"][torch.randperm(7, generator=torch.Generator().manual_seed(1))[:3].numpy()]
        .reshape(3, -1).astype(np.float32) / 255))
    first.x_train.zero_()  # a trial's tensors are its own: the parsed images stay as they were
    assert torch.equal(load("mnist", 6, 4, data_root=tmp_path).x_train,
                       torch.from_numpy(imgs["train"][:6].reshape(6, -1).astype(np.float32) / 255))
    assert parsed == [True, False]
    newer = write_mnist_like(tmp_path, "MNIST", seed=1)  # the same sizes, other images
    for f in (tmp_path / "MNIST" / "raw").iterdir():
        os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))  # as if written a second later
    changed = load("mnist", 6, 4, data_root=tmp_path)
    assert parsed == [True, False, True, False]
    want = torch.from_numpy(newer["train"][:6].reshape(6, -1).astype(np.float32) / 255)
    assert torch.equal(changed.x_train, want)


def test_truncated_idx_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path, "MNIST")
    f = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(DataFileError, match=r"train-images-idx3-ubyte is truncated or corrupt .*header"):
        load("mnist", 3, 3, data_root=tmp_path)


def test_garbage_idx_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").write_bytes(b"not an idx file at all")
    with pytest.raises(DataFileError, match="t10k-labels-idx1-ubyte.*bad magic"):
        load("mnist", 3, 3, data_root=tmp_path)


def write_cifar(root, n_per_batch=4, seed=0):
    rng = np.random.default_rng(seed)
    folder = root / tvd.CIFAR10.base_folder
    folder.mkdir(parents=True)
    rows = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        rows[name] = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)  # R, G, B planes
        batch = {"data": rows[name], "labels": rng.integers(0, 10, n_per_batch).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return folder, rows


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    """Files in CIFAR-10's real pickle format; torchvision's MD5 table set to theirs."""
    folder, rows = write_cifar(tmp_path)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                    for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": md5["batches.meta"]})
    return tmp_path, folder, rows


def test_cifar_loader_reads_real_format(cifar):
    root, _, rows = cifar
    data = load("cifar10", 6, 3, data_root=root)
    assert data.x_train.shape == (6, 3072) and data.x_test.shape == (3, 3072)
    # channels-first flattening: each row comes back as stored (R plane, G plane, B plane)
    want = np.concatenate([rows["data_batch_1"], rows["data_batch_2"][:2]]) / 255
    assert torch.equal(data.x_train, torch.from_numpy(want.astype(np.float32)))
    assert torch.equal(data.x_test, torch.from_numpy((rows["test_batch"][:3] / 255).astype(np.float32)))


def test_corrupt_cifar_batch_is_a_clear_error(cifar):
    root, folder, _ = cifar
    f = folder / "data_batch_3"
    f.write_bytes(f.read_bytes()[:-7])
    with pytest.raises(DataFileError, match="data_batch_3 is truncated or corrupt"):
        load("cifar10", 2, 2, data_root=root)


def test_too_many_images_asked(tmp_path):
    write_mnist_like(tmp_path, "MNIST", n_train=7)
    with pytest.raises(ValueError, match="mnist has 7 training images; asked for 8"):
        load("mnist", 8, 2, data_root=tmp_path)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_nothing_found_lists_every_place_tried(tmp_path, name):
    with pytest.raises(DataUnavailableError) as e:
        load(name, 2, 2, data_root=tmp_path / "empty", debian_dir=tmp_path / "no-debian")
    msg = str(e.value)
    assert f"dataset {name!r} not found" in msg and "\n" not in msg
    assert str(tmp_path / "empty") in msg
    assert "torchvision download (off" in msg
    assert "--data-root" in msg
    assert ("Debian files" in msg) == (name == "fashion_mnist")


def test_real_fashion_mnist_from_debian(fashion_available):
    data = load("fashion_mnist", 1000, 200)
    assert data.source.startswith("Debian files")
    assert data.x_train.shape == (1000, 784) and data.x_test.shape == (200, 784)
    assert data.x_train.min() >= 0 and data.x_train.max() <= 1
    # the "latents unused" floor (docs/science.md): the mean-image MSE of the first 1,000 images is 0.0873
    floor = (data.x_train - data.x_train.mean(0)).square().mean().item()
    assert floor == pytest.approx(0.0873, abs=5e-4)
