"""What the synthetic dataset writers share (see :mod:`jpq.data.synthetic`): the note that marks the
output as synthetic, building into a temporary name that is renamed at the end (refusing an existing
dataset), class templates for images, balanced labels, and tar/folder writers of in-memory files.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SYNTHETIC_NOTE = (
    "SYNTHETIC DATA written by jpq.data.synthetic: random noise in the official file layout, for tests "
    "and timing only. It is not the real dataset; accuracies measured on it mean nothing.\n"
)


def claim(target: Path) -> Path:
    """A fresh temporary sibling of ``target``; refuses an existing target (it may be real data)."""
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite it with synthetic data")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".synth-part")
    if tmp.is_dir():
        shutil.rmtree(tmp)
    elif tmp.exists():
        tmp.unlink()
    return tmp


def commit(tmp: Path, target: Path) -> Path:
    """Rename the finished temporary ``tmp`` to ``target``; returns ``target``."""
    os.replace(tmp, target)
    return target


def block_templates(rng: np.random.Generator, n_classes: int, size: int, cells: int) -> np.ndarray:
    """One uint8 (3, size, size) pattern per class: a random ``cells x cells`` colour grid, upsampled."""
    grid = rng.integers(0, 256, size=(n_classes, 3, cells, cells), dtype=np.uint8)
    rep = size // cells
    return grid.repeat(rep, axis=2).repeat(rep, axis=3)


def mix(noise: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Average of noise and class template, in uint16 to stay exact and cheap."""
    return ((noise.astype(np.uint16) + template.astype(np.uint16)) >> 1).astype(np.uint8)


def balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    """``n`` labels, classes as equal as possible (the official splits are balanced), shuffled."""
    labels = np.arange(n, dtype=np.int64) % n_classes
    rng.shuffle(labels)
    return labels


def write_tar(path: Path, members: Iterable[tuple[str, bytes]], dirs: Sequence[str] = ()) -> None:
    """A gzip'd tar of in-memory files (level 1: the content is noise, compression buys nothing)."""
    with open(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", compresslevel=1) as tf:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tf.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tf.addfile(info, io.BytesIO(data))


def write_tree(target: Path, files: Iterable[tuple[str, bytes]]) -> Path:
    """Write (relative path, bytes) pairs as a folder ``target``, built under a temporary name."""
    tmp = claim(target)
    for rel, data in files:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return commit(tmp, target)
