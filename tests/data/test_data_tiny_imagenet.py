"""Tiny ImageNet loader (jpq/data/tiny_imagenet.py) on generated JPEGs in the official layout."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from jpq.data import tiny_imagenet
from jpq.data.augment import augment_tiny_imagenet
from jpq.data.tiny_imagenet import load_tiny_imagenet
from jpq.errors import DatasetError

WNIDS_FILE_ORDER = ("n09193705", "n01443537", "n04067472")  # sorted: n01443537, n04067472, n09193705
SORTED = sorted(WNIDS_FILE_ORDER)
COLOUR = {"n01443537": (200, 30, 30), "n04067472": (30, 200, 30), "n09193705": (30, 30, 200)}
N_TRAIN = 4
VAL = [("val_0.JPEG", "n09193705"), ("val_1.JPEG", "n01443537"), ("val_2.JPEG", "n04067472"),
       ("val_3.JPEG", "n01443537"), ("val_4.JPEG", "n09193705"), ("val_5.JPEG", "n04067472")]


def _jpeg(rgb: tuple[int, int, int], size: int = 64, grey: bool = False) -> bytes:
    img = Image.new("RGB", (size, size), rgb)
    if grey:
        img = img.convert("L")
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _files() -> dict[str, bytes]:
    files: dict[str, bytes] = {"wnids.txt": ("\n".join(WNIDS_FILE_ORDER) + "\n").encode(),
                               "words.txt": b"n01443537\tgoldfish\nn04067472\treel\nn09193705\talp\n"}
    for wnid in WNIDS_FILE_ORDER:
        boxes = []
        for k in range(N_TRAIN):
            grey = wnid == "n04067472" and k == 1  # a few real images are greyscale
            files[f"train/{wnid}/images/{wnid}_{k}.JPEG"] = _jpeg(COLOUR[wnid], grey=grey)
            boxes.append(f"{wnid}_{k}.JPEG\t0\t0\t63\t63")
        files[f"train/{wnid}/{wnid}_boxes.txt"] = ("\n".join(boxes) + "\n").encode()
    for fname, wnid in VAL:
        files[f"val/images/{fname}"] = _jpeg(COLOUR[wnid])
    files["val/val_annotations.txt"] = "".join(f"{f}\t{w}\t0\t0\t63\t63\n" for f, w in VAL).encode()
    files["test/images/test_0.JPEG"] = _jpeg((0, 0, 0))
    return files


def _write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, raw in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    return root


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _expected_colour(y: torch.Tensor) -> torch.Tensor:
    return torch.tensor([COLOUR[SORTED[int(i)]] for i in y], dtype=torch.float32) / 255


def test_folder_labels_split_and_user_files_untouched(tmp_path: Path) -> None:
    folder = _write_folder(tmp_path / "tiny-imagenet-200", _files())
    before = _snapshot(folder)
    bundle = load_tiny_imagenet(tmp_path, val_size=3, seed=14, progress=False)
    assert _snapshot(folder) == before  # the reference rewrites val/ in place; we must not
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (9, 3, 6)
    assert bundle.num_classes == 200 and bundle.input_shape == (3, 64, 64) and bundle.name == "tiny_imagenet"
    assert bundle.augment is augment_tiny_imagenet and bundle.augment_val is True
    assert bundle.input_quant.signed is False and bundle.input_quant.hi == 1.0
    assert bundle.train.x.dtype == torch.float32 and float(bundle.train.x.max()) <= 1.0
    # train in ImageFolder order (sorted wnid, sorted file), then the seeded 9/3 split
    all_y = torch.tensor([i for i in range(3) for _ in range(N_TRAIN)])
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(14))
    assert torch.equal(bundle.train.y, all_y[perm[:9]]) and torch.equal(bundle.val.y, all_y[perm[9:]])
    # test = official val, labels from val_annotations.txt, ordered by (label, file name)
    assert bundle.test.y.tolist() == [0, 0, 1, 1, 2, 2]
    for split in (bundle.train, bundle.val, bundle.test):
        mean_rgb = split.x.mean(dim=(2, 3))  # (N, 3): solid colours survive JPEG within a few levels
        grey = (mean_rgb.max(1).values - mean_rgb.min(1).values) < 0.01
        target = _expected_colour(split.y)
        assert torch.all((mean_rgb - target).abs()[~grey] < 4 / 255)
    assert len(list((tmp_path / "jpq_cache").glob("tiny_imagenet-*.pt"))) == 1


def test_greyscale_jpeg_becomes_rgb() -> None:
    img = tiny_imagenet.decode_image(_jpeg((30, 200, 30), grey=True), "g.JPEG")
    assert img.shape == (3, 64, 64) and img.dtype == np.uint8
    assert np.array_equal(img[0], img[1]) and np.array_equal(img[1], img[2])


def test_zip_equals_folder_and_cache_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _files()
    _write_folder(tmp_path / "a" / "tiny-imagenet-200", files)
    archive = tmp_path / "b" / "tiny-imagenet-200.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("tiny-imagenet-200/", b"")
        for rel, raw in sorted(files.items(), reverse=True):
            zf.writestr(f"tiny-imagenet-200/{rel}", raw)
    a = load_tiny_imagenet(tmp_path / "a", val_size=0.25, progress=False)
    b = load_tiny_imagenet(tmp_path / "b", val_size=0.25, progress=True)
    for sa, sb in [(a.train, b.train), (a.val, b.val), (a.test, b.test)]:
        assert torch.equal(sa.x, sb.x) and torch.equal(sa.y, sb.y)
    assert sorted(p.name for p in archive.parent.iterdir()) == ["jpq_cache", "tiny-imagenet-200.zip"]

    def no_decoding(raw: bytes, name: str) -> np.ndarray:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(tiny_imagenet, "decode_image", no_decoding)
    c = load_tiny_imagenet(tmp_path / "b", val_size=0.25, seed=3, progress=False)  # other seed: same cache
    assert torch.equal(c.test.x, b.test.x) and len(c.train) == 9
    assert torch.equal(torch.sort(torch.cat([c.train.y, c.val.y])).values,
                       torch.sort(torch.cat([b.train.y, b.val.y])).values)


def test_reference_rewritten_val_layout(tmp_path: Path) -> None:
    """A val/ already rewritten by the reference into val/<wnid>/*.JPEG gives the same test set."""
    files = _files()
    rewritten = {k: v for k, v in files.items() if not k.startswith("val/")}
    for fname, wnid in VAL:
        rewritten[f"val/{wnid}/{fname}"] = files[f"val/images/{fname}"]
    _write_folder(tmp_path / "a" / "tiny-imagenet-200", files)
    _write_folder(tmp_path / "b" / "tiny-imagenet-200", rewritten)
    a = load_tiny_imagenet(tmp_path / "a", val_size=3, progress=False)
    b = load_tiny_imagenet(tmp_path / "b", val_size=3, progress=False)
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.test.y, b.test.y)


def test_format_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"tiny-imagenet-200\.zip.*download=True"):
        load_tiny_imagenet(tmp_path, progress=False)
    files = _files()
    files["train/n01443537/images/n01443537_0.JPEG"] = _jpeg((1, 2, 3), size=32)
    _write_folder(tmp_path / "tiny-imagenet-200", files)
    with pytest.raises(DatasetError, match="32x32, expected 64x64"):
        load_tiny_imagenet(tmp_path, val_size=3, progress=False)
    (tmp_path / "tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG").write_bytes(b"no")
    with pytest.raises(DatasetError, match="not a readable image"):
        load_tiny_imagenet(tmp_path, val_size=3, progress=False)
    bad_zip = tmp_path / "z" / "tiny-imagenet-200.zip"
    bad_zip.parent.mkdir()
    bad_zip.write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(DatasetError, match="248,100,043"):
        load_tiny_imagenet(bad_zip.parent, progress=False)


def test_unknown_wnid_in_annotations(tmp_path: Path) -> None:
    files = _files()
    files["val/val_annotations.txt"] += b"val_0.JPEG\tn99999999\t0\t0\t1\t1\n"
    _write_folder(tmp_path / "tiny-imagenet-200", files)
    with pytest.raises(DatasetError, match="n99999999"):
        load_tiny_imagenet(tmp_path, val_size=3, progress=False)
