"""CIFAR-10 for the ResNet-8 benchmark (docs/benchmarks.md §2).

Reads the official python distribution, either ``<data_dir>/cifar-10-python.tar.gz`` (read in place,
never extracted) or its extracted ``<data_dir>/cifar-10-batches-py/``. Each batch is a Python-2 pickle
of ``{b'data': uint8 (N, 3072), b'labels': [int], b'filenames': [bytes], b'batch_label': bytes}``
(§2.1); our own reader replaces torchvision's, which refuses any file whose md5 is not the official
one (§2.2 caveat) and would therefore reject generated test data. The unpickler only admits the few
numpy globals such pickles use, so a hostile file cannot run code.

Reference behaviour reproduced (§2.2, §2.3):

* train = batches 1..5 in order, then ``random_split([n - val, val])`` with
  ``torch.Generator().manual_seed(seed)``: ``perm = randperm(n)``, train = ``perm[:n - val]``,
  val = ``perm[n - val:]`` (seed 14 as the paper scripts; they seed the global RNG instead, so their
  exact split is not reproducible - ours is deterministic per seed);
* test = the full 10,000-image test batch; ``extra_test["perf"]`` = the 200 MLPerf Tiny perf samples
  (``PERF_SAMPLE_IDXS``, shipped below, identical to ``perf_samples_idxs.npy``, md5
  ``c806ed872903de072e7ac9541291b01c``). It is only built when the test set is large enough to hold
  them (always for the real data; generated test data may be smaller);
* inputs float32 CHW in [0, 1] (``ToTensor``), no mean/std normalisation;
* augmentation (rotation 15 deg, ±10 % shift, hflip) is applied batched to train **and validation**
  batches: the reference validation subset shares the training dataset object (``augment_val=True``).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jpq.data.augment import augment_cifar10
from jpq.data.base import DataBundle, InputQuant, Split
from jpq.data.download import locate, size_hint
from jpq.errors import DatasetError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: MLPerf Tiny "ic01" performance set: 200 CIFAR-10 test indices, 20 per class, in file order
#: (docs/benchmarks.md §2.2; ``np.save`` of this list as int64 reproduces the official file's md5).
PERF_SAMPLE_IDXS: tuple[int, ...] = (
    7657, 8959, 3596, 327, 2783, 6567, 7295, 1945, 8799, 4605, 4558, 4593, 20, 7769, 4619, 7036, 7360,
    4552, 5507, 6617, 8926, 4755, 5971, 8325, 2890, 517, 6395, 8899, 3832, 5445, 2216, 1821, 3122, 3455,
    4255, 9964, 9515, 4912, 5288, 5346, 1044, 289, 8913, 9045, 4940, 5984, 2390, 2209, 9688, 7432, 4649,
    1004, 9614, 2285, 3150, 2915, 2940, 2096, 634, 8301, 4238, 7257, 9244, 2101, 1107, 3492, 5864, 4354,
    7302, 1722, 6832, 127, 2398, 6639, 3639, 9010, 1274, 7358, 1003, 7850, 5433, 673, 7820, 7797, 4764,
    6137, 4758, 6705, 1437, 8328, 2642, 1597, 9661, 8331, 1273, 8242, 7617, 6925, 3830, 613, 2973, 3865,
    4021, 4355, 9068, 3701, 5023, 62, 5255, 3770, 6059, 4952, 232, 3382, 7129, 4446, 8881, 4636, 4880,
    647, 6628, 5339, 2448, 5055, 1387, 1757, 8171, 1835, 6136, 447, 103, 4564, 5315, 2470, 6961, 660,
    585, 6431, 4374, 1932, 6658, 4812, 5273, 4701, 4441, 4819, 1933, 5195, 5826, 4976, 5562, 7672, 8188,
    6591, 8813, 6077, 1887, 8116, 5591, 8975, 8892, 7041, 3661, 9993, 7722, 64, 888, 9762, 1263, 7660,
    9226, 3736, 2506, 3190, 4913, 6754, 8442, 1382, 5800, 7061, 7216, 4995, 2331, 3900, 2653, 3224,
    1629, 7195, 3961, 3675, 393, 3464, 8669, 2636, 6751, 6425, 8390, 5619, 3996, 451,
)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _BatchUnpickler(pickle.Unpickler):
    """Admits only what CIFAR batch pickles reference (numpy array reconstruction, bytes codec)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "_codecs":
            import codecs

            return codecs.encode
        return getattr(np, name)


def read_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one batch pickle into ``(images uint8 (N, 3, 32, 32), labels int64 (N,))`` (§2.1)."""
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any parse failure is a format error for the user
        raise DatasetError(f"CIFAR-10 file {name} is not a CIFAR python batch pickle ({e})") from e
    if not isinstance(obj, dict) or b"data" not in obj or b"labels" not in obj:
        keys = [repr(k) for k in obj] if isinstance(obj, dict) else type(obj).__name__
        raise DatasetError(f"CIFAR-10 file {name}: expected a dict with keys b'data', b'labels'; got {keys}")
    data = np.asarray(obj[b"data"])
    try:
        labels = np.asarray(obj[b"labels"], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise DatasetError(f"CIFAR-10 file {name}: b'labels' is not a list of ints ({e})") from e
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetError(
            f"CIFAR-10 file {name}: b'data' must be uint8 (N, 3072), got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise DatasetError(f"CIFAR-10 file {name}: {data.shape[0]} images but {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DatasetError(f"CIFAR-10 file {name}: labels outside 0..9")
    # each row: 1024 R, 1024 G, 1024 B, each plane row-major 32x32 -> CHW directly
    return data.reshape(-1, *IMAGE_SHAPE), labels


def _check_meta(raw: bytes, name: str) -> None:
    try:
        obj = _BatchUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as e:  # any parse failure is a format error
        raise DatasetError(f"CIFAR-10 file {name} is not a CIFAR python meta pickle ({e})") from e
    names = obj.get(b"label_names") if isinstance(obj, dict) else None
    if not isinstance(names, list) or len(names) != NUM_CLASSES:
        raise DatasetError(f"CIFAR-10 file {name}: expected b'label_names' with 10 entries")


def _read_files(source: Path) -> dict[str, bytes]:
    """The raw bytes of the five train batches, the test batch and the meta file (if present)."""
    wanted = (*TRAIN_BATCHES, TEST_BATCH, META)
    files: dict[str, bytes] = {}
    if source.is_dir():
        for name in wanted:
            if (source / name).is_file():
                files[name] = (source / name).read_bytes()
    else:
        try:
            with tarfile.open(source, "r:*") as tf:
                for member in tf:
                    parts = member.name.replace("\\", "/").split("/")
                    if member.isfile() and len(parts) >= 2 and parts[-2] == FOLDER and parts[-1] in wanted:
                        fh = tf.extractfile(member)
                        if fh is not None:
                            files[parts[-1]] = fh.read()
        except (tarfile.TarError, EOFError, OSError) as e:
            raise DatasetError(
                f"{source} is not a readable CIFAR-10 tar.gz archive ({e}){size_hint(source, 'cifar10')}; "
                "delete it and fetch it again"
            ) from e
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in files]
    if missing:
        where = source if source.is_dir() else f"{source} (under {FOLDER}/)"
        raise DatasetError(f"CIFAR-10 is incomplete: {', '.join(missing)} missing in {where}")
    return files


def split_train_val(n: int, val_size: int | float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices of ``random_split(range(n), [n - v, v], Generator().manual_seed(seed))`` (§2.2, §4.2).

    ``val_size``: an int is a count (10,000 = the official 40k/10k of CIFAR-10, 90k/10k of Tiny
    ImageNet); a float in (0, 1) is a fraction of ``n`` rounded down, so generated or subset data
    scales (0.2 of 50,000 is again 10,000).
    """
    if isinstance(val_size, float):
        if not 0.0 < val_size < 1.0:
            raise DatasetError(f"val_size as a fraction must be in (0, 1), got {val_size}")
        n_val = int(n * val_size)
    else:
        n_val = int(val_size)
    if not 0 < n_val < n:
        raise DatasetError(
            f"val_size={val_size} leaves no training or no validation data out of {n} training images; "
            "give a smaller count or a fraction such as 0.2"
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[: n - n_val], perm[n - n_val :]


def _to_float(images: np.ndarray | Tensor) -> Tensor:
    """uint8 CHW -> float32 in [0, 1] (``ToTensor``; no normalisation, §2.3)."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    return images.to(torch.float32).div_(255.0)


def load_cifar10(
    data_dir: str | Path,
    *,
    download: bool = False,
    seed: int = 14,
    val_size: int | float = 10_000,
    progress: bool = True,
) -> DataBundle:
    """CIFAR-10 as tensors: 40k/10k seeded train/val, the 10k test set and the 200 perf samples (§2)."""
    source = locate(
        data_dir, key="cifar10", folders=(FOLDER,), marker=TRAIN_BATCHES[0], download=download,
        progress=progress, what="CIFAR-10",
    )
    files = _read_files(source)
    if META in files:
        _check_meta(files[META], META)
    train_parts = [read_batch(files[name], name) for name in TRAIN_BATCHES]
    train_images = np.concatenate([p[0] for p in train_parts])
    train_labels = np.concatenate([p[1] for p in train_parts])
    test_images, test_labels = read_batch(files[TEST_BATCH], TEST_BATCH)

    x_all, y_all = torch.from_numpy(train_images), torch.from_numpy(train_labels)  # uint8: index, then scale
    train_idx, val_idx = split_train_val(len(y_all), val_size, seed)
    test = Split(_to_float(test_images), torch.from_numpy(test_labels))
    extra: dict[str, Split] = {}
    if len(test) > max(PERF_SAMPLE_IDXS):
        perf = torch.tensor(PERF_SAMPLE_IDXS, dtype=torch.int64)
        extra["perf"] = Split(test.x[perf], test.y[perf])
    return DataBundle(
        name="cifar10",
        train=Split(_to_float(x_all[train_idx]), y_all[train_idx]),
        val=Split(_to_float(x_all[val_idx]), y_all[val_idx]),
        test=test,
        num_classes=NUM_CLASSES,
        input_shape=IMAGE_SHAPE,
        augment=augment_cifar10,
        augment_val=True,
        extra_test=extra,
        input_quant=InputQuant(signed=False, hi=1.0),
    )
