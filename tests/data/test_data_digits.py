"""The embedded digits dataset: read from scikit-learn's bundled file, the same data as its loader."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from sklearn.datasets import load_digits as sk_load_digits

from jpq.data import digits


def test_the_bundled_file_holds_what_scikit_learn_loads() -> None:
    images, target = digits.read_digits()
    raw = sk_load_digits()
    assert images.shape == (1797, 8, 8) and target.dtype == np.int64
    np.testing.assert_array_equal(images, raw.images)
    np.testing.assert_array_equal(target, raw.target)
    assert np.bincount(target).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_where_the_file_moved_scikit_learn_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(digits, "bundled_file", lambda: None)
    a = digits.load_digits()
    monkeypatch.undo()
    b = digits.load_digits()
    assert (len(b.train), len(b.val), len(b.test)) == (1077, 360, 360)
    for split in ("train", "val", "test"):
        assert np.array_equal(getattr(a, split).x.numpy(), getattr(b, split).x.numpy())
        assert np.array_equal(getattr(a, split).y.numpy(), getattr(b, split).y.numpy())


def test_loading_the_digits_does_not_import_scikit_learn() -> None:
    """Importing scikit-learn takes about a second, once per process of a sweep."""
    code = "import sys; from jpq.data import digits; digits.load_digits(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
