"""Tiny ImageNet (200 classes, 64 x 64) for the ResNet-18 benchmark (docs/benchmarks.md §4).

Reads ``<data_dir>/tiny-imagenet-200.zip`` in place or its extracted ``<data_dir>/tiny-imagenet-200/``
(``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` + ``val/val_annotations.txt``).
Unlike the reference, which rewrites ``val/`` in place into per-class folders on first use (§4.2), the
user's files are never modified: the labels of the official validation images are taken from
``val_annotations.txt``. A ``val/`` already rewritten by the reference (``val/<wnid>/*.JPEG``, no
annotation file) is read as well.

* labels = index of the wnid in the sorted ``wnids.txt`` (ImageFolder's sorted class folders);
* train order = sorted paths (ImageFolder's walk); ``random_split`` 90 % / 10 % with a seeded
  generator -> 90,000 / 10,000 (``val_size``: count or fraction, see ``split_train_val``);
* test = the official ``val/`` (10,000), ordered by (label, file name) like ImageFolder on the
  rewritten layout;
* images decoded once with Pillow (``.convert("RGB")`` handles the few greyscale JPEGs) into a uint8
  cache ``<data_dir>/jpq_cache/tiny_imagenet-<hash>.pt``, then float32 CHW in [0, 1], no mean/std;
* augmentation: horizontal flip (batched), applied to validation batches too (``augment_val=True``:
  the reference validation subset uses the training transform).

Memory note: the float32 tensors of the full dataset take about 4.9 GB (train + val) + 0.5 GB (test).
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jpq.data.augment import augment_tiny_imagenet
from jpq.data.base import DataBundle, InputQuant, Split
from jpq.data.cifar10 import split_train_val
from jpq.data.download import cache_path, load_cache, locate, save_cache, size_hint, source_fingerprint
from jpq.errors import DatasetError

FOLDER = "tiny-imagenet-200"
NUM_CLASSES = 200
IMAGE_SIZE = 64
INPUT_SHAPE = (3, IMAGE_SIZE, IMAGE_SIZE)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
CACHE_VERSION = 1
DECODE_CHUNK = 2048


class _Source:
    """Uniform read access to the dataset root inside a folder or a zip (names relative to the root)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_dir():
            self.names = sorted(
                (Path(root) / f).relative_to(path).as_posix()
                for root, _, files in os.walk(path)
                for f in files
            )
            return
        try:
            self.zip = zipfile.ZipFile(path)
            all_names = [n for n in self.zip.namelist() if not n.endswith("/")]
        except (zipfile.BadZipFile, OSError) as e:
            raise DatasetError(
                f"{path} is not a readable zip archive ({e}){size_hint(path, 'tiny_imagenet')}; "
                "delete it and fetch it again"
            ) from e
        roots = sorted((n[: -len("wnids.txt")] for n in all_names if n.endswith("wnids.txt")), key=len)
        if not roots:
            raise DatasetError(f"{path} has no wnids.txt: not the Tiny ImageNet archive")
        self.prefix = roots[0]
        self.names = sorted(n[len(self.prefix) :] for n in all_names if n.startswith(self.prefix))

    def read(self, name: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(self.prefix + name)
            return (self.path / name).read_bytes()
        except (KeyError, OSError, zipfile.BadZipFile) as e:
            raise DatasetError(f"Tiny ImageNet: cannot read {name} from {self.path} ({e})") from e

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def decode_image(raw: bytes, name: str) -> np.ndarray:
    """JPEG bytes -> uint8 (3, 64, 64); greyscale becomes RGB; another size is a DatasetError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DatasetError(f"Tiny ImageNet: {name} is not a readable image ({e})") from e
    if rgb.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
        raise DatasetError(f"Tiny ImageNet: {name} is {rgb.shape[1]}x{rgb.shape[0]}, expected 64x64")
    return rgb.transpose(2, 0, 1)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _index(src: _Source) -> tuple[list[str], list[tuple[str, int]], list[tuple[str, int]]]:
    """(sorted wnids, train (path, label) in ImageFolder order, test (path, label) by (label, name))."""
    if "wnids.txt" not in src.names:
        raise DatasetError(f"Tiny ImageNet: wnids.txt missing in {src.path}")
    wnids = sorted({w.strip() for w in src.read("wnids.txt").decode("utf-8").splitlines() if w.strip()})
    label_of = {w: i for i, w in enumerate(wnids)}
    train: list[tuple[str, int]] = []
    for name in src.names:
        parts = name.split("/")
        if parts[0] == "train" and len(parts) >= 3 and _is_image(name):
            if parts[1] not in label_of:
                raise DatasetError(f"Tiny ImageNet: train folder {parts[1]} is not listed in wnids.txt")
            train.append((name, label_of[parts[1]]))
    test: list[tuple[str, int]] = []
    if "val/val_annotations.txt" in src.names:
        for line in src.read("val/val_annotations.txt").decode("utf-8").splitlines():
            fields = line.split("\t")
            if len(fields) < 2 or not fields[0].strip():
                continue
            fname, wnid = fields[0].strip(), fields[1].strip()
            if wnid not in label_of:
                raise DatasetError(f"Tiny ImageNet: val_annotations.txt gives {fname} unknown wnid {wnid}")
            test.append((f"val/images/{fname}", label_of[wnid]))
        names = set(src.names)
        absent = [p for p, _ in test if p not in names]
        if absent:
            raise DatasetError(f"Tiny ImageNet: {len(absent)} annotated val images missing: {absent[0]} ...")
    else:  # val/ already rewritten into per-class folders by the reference loader
        for name in src.names:
            parts = name.split("/")
            if parts[0] == "val" and len(parts) >= 3 and parts[1] in label_of and _is_image(name):
                test.append((name, label_of[parts[1]]))
    test.sort(key=lambda item: (item[1], item[0].rsplit("/", 1)[-1]))
    if not train or not test:
        raise DatasetError(
            f"Tiny ImageNet in {src.path} has {len(train)} train and {len(test)} val images: expected "
            "train/<wnid>/images/*.JPEG and val/images/*.JPEG with val/val_annotations.txt"
        )
    return wnids, train, test


def _decode_all(src: _Source, items: list[tuple[str, int]], advance: Callable[[int], None]) -> Tensor:
    """Decode ``items`` into uint8 (N, 3, 64, 64); bytes read in this thread, decoding in a pool."""
    out = np.empty((len(items), *INPUT_SHAPE), dtype=np.uint8)
    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(items), DECODE_CHUNK):
            chunk = items[start : start + DECODE_CHUNK]
            raws = [src.read(name) for name, _ in chunk]
            for i, img in enumerate(pool.map(decode_image, raws, [n for n, _ in chunk])):
                out[start + i] = img
            advance(len(chunk))
    return torch.from_numpy(out)


def _extract(source: Path, progress: bool) -> dict[str, Tensor]:
    src = _Source(source)
    try:
        _, train, test = _index(src)
        total = len(train) + len(test)
        if progress:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn()) as bar:
                task = bar.add_task("Tiny ImageNet: decoding (once, then cached)", total=total)

                def advance(n: int) -> None:
                    bar.update(task, advance=n)

                train_x, test_x = _decode_all(src, train, advance), _decode_all(src, test, advance)
        else:
            train_x, test_x = _decode_all(src, train, lambda n: None), _decode_all(src, test, lambda n: None)
    finally:
        src.close()
    return {
        "train_x": train_x,
        "train_y": torch.tensor([lab for _, lab in train], dtype=torch.int64),
        "test_x": test_x,
        "test_y": torch.tensor([lab for _, lab in test], dtype=torch.int64),
    }


def load_tiny_imagenet(
    data_dir: str | Path,
    *,
    download: bool = False,
    seed: int = 14,
    val_size: int | float = 10_000,
    progress: bool = True,
) -> DataBundle:
    """Tiny ImageNet as tensors: seeded 90k/10k train/val of ``train/``, official ``val/`` as test (§4)."""
    source = locate(
        data_dir, key="tiny_imagenet", folders=(FOLDER,), marker="wnids.txt", download=download,
        progress=progress, what="Tiny ImageNet",
    )
    key = {"version": CACHE_VERSION, "source": source_fingerprint(source)}
    path = cache_path(data_dir, "tiny_imagenet", key)
    cached = load_cache(path)
    if cached is None or any(k not in cached for k in ("train_x", "train_y", "test_x", "test_y")):
        cached = _extract(source, progress)
        save_cache(path, cached)
    x_all, y_all = cached["train_x"], cached["train_y"]  # uint8: gather first, then scale (peak memory)
    train_idx, val_idx = split_train_val(len(y_all), val_size, seed)

    def to_float(x: Tensor) -> Tensor:
        return x.to(torch.float32).div_(255.0)

    return DataBundle(
        name="tiny_imagenet",
        train=Split(to_float(x_all[train_idx]), y_all[train_idx]),
        val=Split(to_float(x_all[val_idx]), y_all[val_idx]),
        test=Split(to_float(cached["test_x"]), cached["test_y"]),
        num_classes=NUM_CLASSES,
        input_shape=INPUT_SHAPE,
        augment=augment_tiny_imagenet,
        augment_val=True,
        input_quant=InputQuant(signed=False, hi=1.0),
    )
