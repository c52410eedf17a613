"""The embedded default dataset: scikit-learn's bundled handwritten digits (no download).

1,797 grey 8x8 images of 10 classes (UCI ML hand-written digits, values 0..16), scaled to [0, 1].
Fixed split with a fixed permutation seed (independent of the run seed, so every run and every sweep
job sees the same data): 1,077 train / 360 val / 360 test.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from jpq.data.base import DataBundle, InputQuant, Split

SPLIT_SEED = 1797
N_VAL = 360
N_TEST = 360


def bundled_file() -> Path | None:
    """scikit-learn's file of the digits, found without importing scikit-learn (that takes about 1 s):
    one CSV row per image, 64 pixel values then the class; None where a version keeps it elsewhere."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        from jpq.errors import DatasetError

        raise DatasetError("the digits dataset needs scikit-learn: pip install scikit-learn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    return path if path.is_file() else None


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 images as (1797, 8, 8) float values 0..16 and their classes (int64)."""
    path = bundled_file()
    if path is None:  # scikit-learn moved its file: its own loader reads the same data
        from sklearn.datasets import load_digits as _sk_load_digits

        raw = _sk_load_digits()
        return np.asarray(raw.images, dtype=np.float64), np.asarray(raw.target, dtype=np.int64)
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_digits() -> DataBundle:
    images, target = read_digits()
    x = torch.from_numpy(np.asarray(images, dtype=np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.from_numpy(target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SPLIT_SEED))
    test_idx, val_idx, train_idx = order[:N_TEST], order[N_TEST : N_TEST + N_VAL], order[N_TEST + N_VAL :]
    return DataBundle(
        name="digits",
        train=Split(x[train_idx], y[train_idx]),
        val=Split(x[val_idx], y[val_idx]),
        test=Split(x[test_idx], y[test_idx]),
        num_classes=10,
        input_shape=(1, 8, 8),
        augment=None,
        input_quant=InputQuant(signed=False, hi=1.0),
    )
