"""Synthetic CIFAR-10 in the official python format (docs/benchmarks.md §2.1).

``cifar-10-batches-py/`` holds ``data_batch_1..5``, ``test_batch``, ``batches.meta`` and ``readme.html``
(or all of it inside ``cifar-10-python.tar.gz``). The batches are Python-2 style protocol-2 pickles
(byte strings as ``BINSTRING``, numpy arrays via ``numpy.core.multiarray._reconstruct``), i.e. what
``pickle.load(f, encoding='bytes')`` reads from the official files.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np

from jpq.data.synthetic_common import (
    SYNTHETIC_NOTE,
    balanced_labels,
    block_templates,
    claim,
    commit,
    mix,
    write_tar,
)

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_PER_BATCH = 10_000


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # pure-Python pickler: overridable
    """Protocol 2 as Python 2's cPickle wrote the official batches: byte strings as ``(SHORT_)BINSTRING``
    (read back as ``bytes`` with ``encoding='bytes'``) and numpy's ``numpy.core.multiarray`` path, so
    old and new readers alike accept the files (docs/benchmarks.md §2.1)."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n))
            self.write(obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if getattr(obj, "__name__", None) == "_reconstruct" and "multiarray" in module:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _py2_pickle(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _cifar_batch(
    rng: np.random.Generator, templates: np.ndarray, n: int, batch_label: str, first_index: int
) -> bytes:
    labels = balanced_labels(rng, n, len(CIFAR_LABEL_NAMES))
    noise = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    data = mix(noise, templates[labels]).reshape(n, 3 * 32 * 32)  # row: 1024 R, 1024 G, 1024 B
    filenames = [
        f"synthetic_{CIFAR_LABEL_NAMES[lab]}_s_{first_index + i:06d}.png".encode()
        for i, lab in enumerate(labels)
    ]
    return _py2_pickle(
        {
            b"batch_label": batch_label.encode(),
            b"labels": [int(v) for v in labels],
            b"data": data,
            b"filenames": filenames,
        }
    )


def _split_counts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def write_cifar10(
    root: str | Path, *, n_train: int = 50_000, n_test: int = 10_000, seed: int = 0, archive: bool = False
) -> Path:
    """Write CIFAR-10 in the official python format under ``root`` (docs/benchmarks.md §2.1).

    ``n_train`` images go into the five ``data_batch_*`` files (10,000 each at the real size; otherwise as
    equal as possible), ``n_test`` into ``test_batch``; labels are balanced. ``archive=True`` writes
    ``root/cifar-10-python.tar.gz`` (members under ``cifar-10-batches-py/``) instead of the folder.
    Returns the folder or archive path; pass ``data_dir=root`` to jpq.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(f"CIFAR-10 needs n_train >= 5 (five batches), n_test >= 1; got {n_train}, {n_test}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    templates = block_templates(rng, len(CIFAR_LABEL_NAMES), 32, 4)
    files: dict[str, bytes] = {}
    first = 0
    for i, n in enumerate(_split_counts(n_train, 5), start=1):
        files[f"data_batch_{i}"] = _cifar_batch(rng, templates, n, f"training batch {i} of 5", first)
        first += n
    files["test_batch"] = _cifar_batch(rng, templates, n_test, "testing batch 1 of 1", first)
    files["batches.meta"] = _py2_pickle(
        {
            b"num_cases_per_batch": CIFAR_PER_BATCH,
            b"label_names": [name.encode() for name in CIFAR_LABEL_NAMES],
            b"num_vis": 3 * 32 * 32,
        }
    )
    files["readme.html"] = f"<html><body><pre>{SYNTHETIC_NOTE}</pre></body></html>\n".encode()
    order = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta", "readme.html"]
    if archive:
        target = root / CIFAR_ARCHIVE
        tmp = claim(target)
        write_tar(tmp, [(f"{CIFAR_FOLDER}/{name}", files[name]) for name in order], dirs=[CIFAR_FOLDER])
        return commit(tmp, target)
    target = root / CIFAR_FOLDER
    tmp = claim(target)
    tmp.mkdir()
    for name in order:
        (tmp / name).write_bytes(files[name])
    return commit(tmp, target)
