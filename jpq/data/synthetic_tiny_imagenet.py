"""Synthetic Tiny ImageNet in the ``tiny-imagenet-200`` layout (docs/benchmarks.md §4.1).

``wnids.txt``, ``words.txt``, ``train/<wnid>/images/<wnid>_<k>.JPEG`` + ``<wnid>_boxes.txt``,
``val/images/val_<k>.JPEG`` + ``val/val_annotations.txt``, ``test/images/test_<k>.JPEG``, as a folder or
inside ``tiny-imagenet-200.zip``; 64x64 JPEGs via Pillow, a few of them greyscale like the real set.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jpq.data.synthetic_common import (
    SYNTHETIC_NOTE,
    balanced_labels,
    block_templates,
    claim,
    commit,
    mix,
    write_tree,
)

TIN_FOLDER = "tiny-imagenet-200"
TIN_ARCHIVE = "tiny-imagenet-200.zip"
TIN_SIZE = 64


def _jpeg(pixels: np.ndarray, grey: bool) -> bytes:
    """uint8 (3, 64, 64) -> JPEG bytes (quality 90); ``grey`` stores a one-channel JPEG (§4.1)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)), mode="RGB")
    if grey:
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _tin_files(
    rng: np.random.Generator, wnids: list[str], per_class: int, val_per_class: int, test_images: int
) -> Iterator[tuple[str, bytes]]:
    templates = block_templates(rng, len(wnids), TIN_SIZE, 8)
    every = 97  # about 1 % greyscale images (the real set has a few)

    def image(label: int | None, index: int) -> bytes:
        noise = rng.integers(0, 256, size=(3, TIN_SIZE, TIN_SIZE), dtype=np.uint8)
        cls = label if label is not None else int(rng.integers(0, len(wnids)))
        return _jpeg(mix(noise, templates[cls]), grey=index % every == every - 1)

    def box() -> str:
        x0, y0 = (int(v) for v in rng.integers(0, 32, size=2))
        x1, y1 = (int(v) for v in rng.integers(32, 64, size=2))
        return f"{x0}\t{y0}\t{x1}\t{y1}"

    yield "wnids.txt", "".join(f"{w}\n" for w in wnids).encode()
    # the real words.txt covers all of ImageNet (82,115 synsets); ours names the dataset's own
    yield "words.txt", "".join(f"{w}\tsynthetic class {i}\n" for i, w in enumerate(sorted(wnids))).encode()
    count = 0
    for label, wnid in enumerate(wnids):
        boxes = []
        for k in range(per_class):
            name = f"{wnid}_{k}.JPEG"
            yield f"train/{wnid}/images/{name}", image(label, count)
            boxes.append(f"{name}\t{box()}\n")
            count += 1
        yield f"train/{wnid}/{wnid}_boxes.txt", "".join(boxes).encode()
    val_labels = balanced_labels(rng, len(wnids) * val_per_class, len(wnids))
    notes = []
    for k, label in enumerate(val_labels):
        name = f"val_{k}.JPEG"
        yield f"val/images/{name}", image(int(label), count)
        notes.append(f"{name}\t{wnids[int(label)]}\t{box()}\n")
        count += 1
    yield "val/val_annotations.txt", "".join(notes).encode()
    for k in range(test_images):
        yield f"test/images/test_{k}.JPEG", image(None, count)
        count += 1
    yield "SYNTHETIC.txt", SYNTHETIC_NOTE.encode()


def _random_wnids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct WordNet-style ids ``n%08d``, in random order like the real ``wnids.txt``."""
    ids: set[int] = set()
    while len(ids) < n:
        ids.add(int(rng.integers(1_000_000, 15_000_000)))
    out = [f"n{i:08d}" for i in ids]
    rng.shuffle(out)  # type: ignore[arg-type]
    return out


def write_tiny_imagenet(
    root: str | Path,
    *,
    per_class: int = 500,
    classes: int = 200,
    val_per_class: int = 50,
    test_images: int | None = None,
    seed: int = 0,
    archive: bool = False,
) -> Path:
    """Write Tiny ImageNet (``tiny-imagenet-200`` layout, docs/benchmarks.md §4.1) under ``root``.

    ``per_class`` training JPEGs for each of ``classes`` wnids (500 x 200 is the real size),
    ``val_per_class`` x ``classes`` validation JPEGs listed in ``val_annotations.txt`` (50 x 200 real),
    ``test_images`` unlabelled test JPEGs (default: as many as validation images, like the real 10,000;
    unused by jpq). ``archive=True`` writes ``root/tiny-imagenet-200.zip`` (members under
    ``tiny-imagenet-200/``, with directory entries) instead of the folder. Returns the folder or
    archive path; pass ``data_dir=root`` to jpq.
    """
    if classes < 1 or per_class < 1 or val_per_class < 1:
        raise ValueError("classes, per_class and val_per_class must be >= 1")
    root = Path(root)
    rng = np.random.default_rng(seed)
    wnids = _random_wnids(rng, classes)
    n_test = classes * val_per_class if test_images is None else test_images
    files = _tin_files(rng, wnids, per_class, val_per_class, n_test)
    if not archive:
        return write_tree(root / TIN_FOLDER, files)
    target = root / TIN_ARCHIVE
    tmp = claim(target)
    made: set[str] = set()
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:  # JPEGs do not deflate
        for rel, data in files:
            parts = f"{TIN_FOLDER}/{rel}".split("/")
            for depth in range(1, len(parts)):
                d = "/".join(parts[:depth]) + "/"
                if d not in made:
                    made.add(d)
                    zf.writestr(d, b"")
            zf.writestr("/".join(parts), data)
    return commit(tmp, target)
