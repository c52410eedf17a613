"""CIFAR-10 loader (jpq/data/cifar10.py) on generated batches in the official python format."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import random_split

from jpq.data.augment import augment_cifar10
from jpq.data.cifar10 import LABEL_NAMES, PERF_SAMPLE_IDXS, load_cifar10, read_batch
from jpq.errors import DatasetError

N_PER_BATCH = 8  # 5 x 8 = 40 training images


def _batch(name: str, first: int, n: int) -> dict[bytes, object]:
    """Images whose pixel (R, 0, 0) holds the global index and whose G plane encodes the position."""
    data = np.zeros((n, 3072), dtype=np.uint8)
    for j in range(n):
        data[j, 0] = (first + j) % 256  # R plane, pixel (0, 0)
        data[j, 1] = (first + j) // 256  # R plane, pixel (0, 1)
        data[j, 1024:2048] = np.arange(1024) % 251  # G plane, row-major h * 32 + w
        data[j, 2048:] = 200  # B plane
    return {
        b"batch_label": f"{name} of 5".encode(),
        b"labels": [(first + j) % 10 for j in range(n)],
        b"data": data,
        b"filenames": [f"img_{first + j}.png".encode() for j in range(n)],
    }


def _meta() -> dict[bytes, object]:
    names = [s.encode() for s in LABEL_NAMES]
    return {b"num_cases_per_batch": 10000, b"label_names": names, b"num_vis": 3072}


def _write_folder(root: Path, n_test: int = 12) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for k in range(5):
        batch = _batch(f"training batch {k + 1}", k * N_PER_BATCH, N_PER_BATCH)
        (folder / f"data_batch_{k + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(_batch("testing batch 1", 0, n_test), protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps(_meta(), protocol=2))
    (folder / "readme.html").write_text("<html></html>")
    return folder


def _write_archive(root: Path) -> Path:
    src = _write_folder(root / "src")
    archive = root / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="cifar-10-batches-py")
    return archive


def test_perf_indices_are_the_official_file() -> None:
    """np.save of the shipped indices reproduces perf_samples_idxs.npy byte for byte (md5, 1,728 B)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(PERF_SAMPLE_IDXS, dtype=np.int64))
    assert len(buf.getvalue()) == 1728
    assert hashlib.md5(buf.getvalue()).hexdigest() == "c806ed872903de072e7ac9541291b01c"
    assert len(set(PERF_SAMPLE_IDXS)) == 200 and max(PERF_SAMPLE_IDXS) == 9993 and PERF_SAMPLE_IDXS[0] == 7657


def test_folder_layout_labels_and_split(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    bundle = load_cifar10(tmp_path, val_size=10, seed=14, progress=False)
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (30, 10, 12)
    assert bundle.num_classes == 10 and bundle.input_shape == (3, 32, 32) and bundle.name == "cifar10"
    assert bundle.train.x.dtype == torch.float32 and bundle.train.y.dtype == torch.int64
    assert bundle.augment is augment_cifar10 and bundle.augment_val is True
    assert bundle.input_quant.signed is False and bundle.input_quant.hi == 1.0
    assert bundle.extra_test == {}  # 12 test images cannot hold the perf indices
    # CHW layout of the 3072-byte rows, scaled by 1/255, no normalisation
    x = bundle.test.x
    h, w = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    assert torch.equal(x[:, 1], ((h * 32 + w) % 251).float().div(255).expand(12, 32, 32))
    assert torch.all(x[:, 2] == 200 / 255)
    assert torch.equal((x[:, 0, 0, 0] * 255).round().long(), torch.arange(12))
    assert torch.equal(bundle.test.y, torch.arange(12) % 10)
    # train/val = torch.utils.data.random_split([30, 10]) with Generator().manual_seed(14), in its order
    tr, va = random_split(range(40), [30, 10], generator=torch.Generator().manual_seed(14))
    assert (bundle.train.x[:, 0, 0, 0] * 255).round().long().tolist() == list(tr)
    assert (bundle.val.x[:, 0, 0, 0] * 255).round().long().tolist() == list(va)
    assert bundle.train.y.tolist() == [i % 10 for i in tr]
    other = load_cifar10(tmp_path, val_size=0.25, seed=15, progress=False)
    assert len(other.val) == 10 and not torch.equal(other.val.y, bundle.val.y)


def test_archive_gives_the_same_tensors_as_the_folder(tmp_path: Path) -> None:
    archive = _write_archive(tmp_path)
    a = load_cifar10(archive.parent, val_size=10, progress=False)
    b = load_cifar10(tmp_path / "src", val_size=10, progress=False)
    for sa, sb in [(a.train, b.train), (a.val, b.val), (a.test, b.test)]:
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
    assert sorted(p.name for p in archive.parent.iterdir()) == ["cifar-10-python.tar.gz"]  # nothing extracted


def test_perf_subset_from_full_test_set(tmp_path: Path) -> None:
    _write_folder(tmp_path, n_test=10_000)
    bundle = load_cifar10(tmp_path, val_size=10, progress=False)
    perf = bundle.extra_test["perf"]
    assert len(perf) == 200
    idx = (perf.x[:, 0, 0, 0] * 255).round().long() + 256 * (perf.x[:, 0, 0, 1] * 255).round().long()
    assert idx.tolist() == list(PERF_SAMPLE_IDXS)
    assert perf.y.tolist() == [i % 10 for i in PERF_SAMPLE_IDXS]
    assert len(bundle.test) == 10_000


def test_missing_data_message(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cifar-10-python\.tar\.gz.*download=True"):
        load_cifar10(tmp_path / "nowhere", progress=False)


def test_format_errors(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path)
    good = (folder / "data_batch_3").read_bytes()
    (folder / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=2))
    with pytest.raises(DatasetError, match="data_batch_3.*b'labels'"):
        load_cifar10(tmp_path, val_size=5, progress=False)
    (folder / "data_batch_3").write_bytes(
        pickle.dumps({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(DatasetError, match=r"\(N, 3072\)"):
        load_cifar10(tmp_path, val_size=5, progress=False)
    (folder / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DatasetError, match="not a CIFAR python batch"):
        load_cifar10(tmp_path, val_size=5, progress=False)
    (folder / "data_batch_3").write_bytes(good)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetError, match="test_batch missing"):
        load_cifar10(tmp_path, val_size=5, progress=False)


def test_val_size_must_leave_data(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    with pytest.raises(DatasetError, match="val_size"):
        load_cifar10(tmp_path, progress=False)  # the official 10,000 out of 40 generated images


class _Evil:
    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.mkdir, (self.target,)


def test_hostile_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    raw = pickle.dumps({b"data": _Evil(str(target)), b"labels": []}, protocol=2)
    with pytest.raises(DatasetError, match="not allowed"):
        read_batch(raw, "data_batch_1")
    assert not target.exists()


def test_corrupt_archive(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b\x08" + bytes(50))
    with pytest.raises(DatasetError, match="170,498,071"):
        load_cifar10(tmp_path, progress=False)
