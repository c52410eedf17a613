"""The paper's three benchmarks end to end, as a user runs them, on synthetic data in the official formats.

``jpq.data.synthetic`` writes CIFAR-10 (tar.gz), Speech Commands v0.02 (folders, main + test set) and Tiny
ImageNet (zip) exactly as distributed (docs/benchmarks.md §2.1, §3.1, §4.1, §8); then the real command
``python -m jpq.cli search dataset=... model=...`` runs warmup -> search -> fine-tune on them. The checks
are numbers: the 8-bit sizes of docs/benchmarks.md (ResNet-8 77,360 weights = 618,880 bits, DS-CNN 22,016,
ResNet-18 11,261,632) as the normalisation scale and as an upper bound, and ``size_bits`` recomputed by
hand from ``arch.json`` (one-hot: every channel's bits x kept input channels x kernel, docs/method.md §5.2).
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import os
import pickle
import pickletools
import subprocess
import sys
import tarfile
import wave
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd
import pytest

from jpq.data import synthetic
from jpq.data.cifar10 import load_cifar10
from jpq.data.gsc import SILENCE, load_gsc
from jpq.data.tiny_imagenet import load_tiny_imagenet

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["trainer=smoke", "progress=false", "dataset.download=false"]
#: 8-bit weight sizes of the seeds in bits (docs/benchmarks.md §2.4, §3.4, §4.3: weights x 8)
SEED_8BIT_BITS = {"resnet8": 77_360 * 8, "dscnn": 22_016 * 8, "resnet18": 11_261_632 * 8}

#: which layer's sharing group feeds each layer (None: the network input), read off the seed networks
#: of docs/benchmarks.md §2.4 / §3.4 (residual adds share one group; a depthwise conv has no input term)
RESNET8_PRODUCERS: dict[str, str | None] = {
    "inputblock.conv1": None,
    "convblock1.conv1": "inputblock.conv1",
    "conv1": "convblock1.conv1",
    "convblock2.conv1": "inputblock.conv1",
    "conv2y": "convblock2.conv1",
    "conv2x": "inputblock.conv1",
    "convblock3.conv1": "conv2y",
    "conv3y": "convblock3.conv1",
    "conv3x": "conv2y",
    "out": "conv3y",
}
DSCNN_PRODUCERS: dict[str, str | None] = {
    "inputlayer": None,
    "pointwise1": "depthwise1",
    "pointwise2": "depthwise2",
    "pointwise3": "depthwise3",
    "pointwise4": "depthwise4",
    "out": "pointwise4",
}


def jpq(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "jpq.cli", *args], cwd=cwd, capture_output=True, text=True, env=env,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"jpq {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


def _search(tmp: Path, *overrides: str) -> tuple[dict[str, Any], dict[str, Any], pd.DataFrame]:
    jpq(
        "search", *SMOKE, f"data_dir={tmp / 'data'}", f"hydra.run.dir={tmp / 'run'}",
        f"cache_dir={tmp / 'cache'}", *overrides, cwd=tmp,
    )
    run = tmp / "run"
    return (
        json.loads((run / "result.json").read_text()),
        json.loads((run / "arch.json").read_text()),
        pd.read_csv(run / "history.csv"),
    )


def one_hot_size_bits(arch: dict[str, Any], producers: dict[str, str | None] | None, in_channels: int) -> int:
    """Weight bits of the discrete network, recomputed from arch.json (docs/method.md §5.2, one-hot theta).

    Conv/linear: sum over output channels of bits x (kept input channels) x kernel area; depthwise:
    bits x kernel area. With ``producers`` the kept input channels come from the producing group's
    ``kept``; without, from the reported ``cin_eff`` (checked to be a whole number of channels).
    """
    kept = {g["group"]: g["kept"] for g in arch["groups"]}
    group_of = {layer["name"]: layer["group"] for layer in arch["layers"]}
    total = 0
    for layer in arch["layers"]:
        kh, kw = (int(v) for v in layer["costs"]["kernel"].split("x"))
        bits = sum(int(b) * n for b, n in layer["w_bits_counts"].items())
        assert sum(layer["w_bits_counts"].values()) == layer["c_out"]
        if layer["op"] == "dw":
            size = bits * kh * kw
        else:
            if producers is None:
                cin = layer["costs"]["cin_eff"]
                assert cin == int(cin) and 0 < cin <= layer["c_in"]
            else:
                src = producers[layer["name"]]
                cin = in_channels if src is None else kept[group_of[src]]
            size = bits * int(cin) * kh * kw
        assert layer["costs"]["size_bits"] == size, layer["name"]
        total += size
    return total


def _check_record(rec: dict[str, Any], dataset: str, model: str) -> None:
    assert rec["dataset"] == dataset and rec["model"] == model
    assert rec["method"] == "joint" and rec["cost"] == "size" and rec["w_bits"] == "0,2,4,8"
    for key in ("warmup_val_acc", "warmup_test_acc", "search_val_acc", "final_val_acc", "final_test_acc"):
        assert math.isfinite(rec[key]) and 0.0 <= rec[key] <= 100.0, key
    assert rec["cost_normalized"] is True
    # normalised by the 8-bit seed (docs/benchmarks.md sizes; float32 sums, DS-CNN: 176,127.98)
    assert rec["cost_scale"] == pytest.approx(SEED_8BIT_BITS[model], rel=1e-6)
    assert 0 < rec["size_bits"] <= SEED_8BIT_BITS[model]
    assert rec["size_kb"] == pytest.approx(rec["size_bits"] / 8000)
    for key in ("wall_s_warmup", "wall_s_search", "wall_s_finetune", "wall_s_total"):
        assert rec[key] > 0.0, key


def test_cifar10_resnet8_from_the_official_archive(tmp_path: Path) -> None:
    path = synthetic.write_cifar10(tmp_path / "data", n_train=200, n_test=10_000, archive=True)
    assert path.name == "cifar-10-python.tar.gz"
    rec, arch, hist = _search(tmp_path, "dataset=cifar10", "model=resnet8", "dataset.val_size=40")
    _check_record(rec, "cifar10", "resnet8")
    assert [layer["name"] for layer in arch["layers"]] == list(RESNET8_PRODUCERS)
    assert rec["size_bits"] == one_hot_size_bits(arch, RESNET8_PRODUCERS, 3)
    # the 200 MLPerf perf samples of the full-size test set: each image is 0.5 %
    perf = rec["final_test_acc_perf"]
    assert 0.0 <= perf <= 100.0 and (2 * perf) == int(2 * perf)
    assert set(hist["phase"]) == {"warmup", "search", "finetune"}
    assert arch["input_a_bits"] == 8


def test_gsc_dscnn_from_the_official_folders(tmp_path: Path) -> None:
    synthetic.write_gsc(tmp_path / "data", clips_per_word=3, test_per_label=2, noise_fraction=0.02)
    rec, arch, hist = _search(tmp_path, "dataset=gsc", "model=dscnn")
    _check_record(rec, "gsc", "dscnn")
    names = [layer["name"] for layer in arch["layers"]]
    blocks = [f"{kind}{i}" for i in range(1, 5) for kind in ("depthwise", "pointwise")]
    assert names == ["inputlayer", *blocks, "out"]
    assert rec["size_bits"] == one_hot_size_bits(arch, DSCNN_PRODUCERS, 1)
    assert arch["input_a_bits"] == 8  # signed 8-bit input quantizer of the MFCCs (docs/method.md §6.2)
    assert set(hist["phase"]) == {"warmup", "search", "finetune"}
    assert (tmp_path / "data" / "jpq_cache").is_dir()  # the MFCC features were cached


def test_tiny_imagenet_resnet18_from_the_official_zip(tmp_path: Path) -> None:
    synthetic.write_tiny_imagenet(
        tmp_path / "data", per_class=1, val_per_class=1, test_images=0, archive=True
    )
    phases = [f"trainer.{p}.{k}={v}" for p in ("warmup", "search", "finetune")
              for k, v in (("max_batches", 1), ("batch_size", 4), ("eval_batch_size", 8))]
    rec, arch, hist = _search(
        tmp_path, "dataset=tiny_imagenet", "model=resnet18", "dataset.val_size=40", *phases
    )
    _check_record(rec, "tiny_imagenet", "resnet18")
    assert rec["size_bits"] == one_hot_size_bits(arch, None, 3)
    assert arch["layers"][0]["name"] == "conv1" and arch["layers"][-1]["name"] == "fc"
    assert arch["layers"][-1]["c_out"] == 200
    assert len(hist) == 3


@pytest.mark.parametrize(
    "dataset,model,present,named",
    [
        ("cifar10", "resnet8", None, "cifar-10-python.tar.gz"),
        ("tiny_imagenet", "resnet18", None, "tiny-imagenet-200.zip"),
        ("gsc", "dscnn", "main_only", "speech_commands_test_set_v0.02.tar.gz"),
    ],
)
def test_missing_dataset_fails_in_one_line_before_training(
    tmp_path: Path, dataset: str, model: str, present: str | None, named: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    if present == "main_only":  # the main archive is there, the separate test set is not
        synthetic.write_gsc(tmp_path / "gen", words=("yes",), clips_per_word=3, test_per_label=1,
                            noise_fraction=0.01, archive=True)
        (tmp_path / "gen" / synthetic.GSC_MAIN_ARCHIVE).rename(data / synthetic.GSC_MAIN_ARCHIVE)
    proc = jpq(
        "search", *SMOKE, f"dataset={dataset}", f"model={model}", f"data_dir={data}", "hydra.run.dir=run",
        "cache_dir=cache", cwd=tmp_path, check=False,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert named in errors[0] and str(data) in errors[0] and "download" in errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "cache").exists()


# -- the writers themselves: the official formats ------------------------------------------------------
def test_cifar10_batches_are_python2_protocol2_pickles(tmp_path: Path) -> None:
    folder = synthetic.write_cifar10(tmp_path, n_train=23, n_test=7, seed=3)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta", "readme.html"]
    )
    raw = (folder / "data_batch_1").read_bytes()
    assert raw[:2] == b"\x80\x02"  # protocol 2, as the official files
    globals_ = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert globals_ == {"numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype"}
    batch = pickle.loads(raw, encoding="bytes")
    assert set(batch) == {b"batch_label", b"labels", b"data", b"filenames"}
    assert batch[b"data"].shape == (5, 3072) and str(batch[b"data"].dtype) == "uint8"  # 23 = 5+5+5+4+4
    assert batch[b"batch_label"] == b"training batch 1 of 5"
    meta = pickle.loads((folder / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"label_names"][0] == b"airplane" and meta[b"num_vis"] == 3072
    data = load_cifar10(tmp_path, val_size=3, progress=False)
    assert (len(data.train), len(data.val), len(data.test)) == (20, 3, 7)
    with pytest.raises(FileExistsError):  # never overwrites (it could be the real data)
        synthetic.write_cifar10(tmp_path, n_train=5, n_test=1)


def test_gsc_layout_lists_wavs_and_official_silence_counts(tmp_path: Path) -> None:
    synthetic.write_gsc(tmp_path, words=("yes", "bed", "left"), clips_per_word=10, test_per_label=1, seed=1)
    main = tmp_path / synthetic.GSC_MAIN_FOLDER
    lists = {name: (main / f"{name}_list.txt").read_text().split() for name in ("validation", "testing")}
    assert len(lists["validation"]) == len(lists["testing"]) == 3  # 10 % of 10 clips per word
    for name, files in lists.items():
        assert all(synthetic.which_set(f) == name for f in files)  # the speaker-hash rule of §3.1
    train_files = [p.relative_to(main).as_posix() for p in main.glob("*/*_nohash_*.wav")]
    held_out = set(lists["validation"]) | set(lists["testing"])
    assert len(train_files) == 30
    assert all(synthetic.which_set(f) == "training" for f in train_files if f not in held_out)
    lengths = []
    for path in main.glob("*/*_nohash_*.wav"):
        with wave.open(str(path)) as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 16_000)
            lengths.append(w.getnframes())
    assert max(lengths) == 16_000 and 8_000 <= min(lengths) < 16_000  # some clips shorter than 1 s
    test_dir = tmp_path / synthetic.GSC_TEST_FOLDER
    assert sorted(p.name for p in test_dir.iterdir() if p.is_dir()) == sorted(synthetic.GSC_TEST_LABELS)
    data = load_gsc(tmp_path, progress=False)
    # the official silence windows: 668 from five noise files (training), 121 from running_tap (validation)
    assert int((data.train.y == SILENCE).sum()) == 668 and int((data.val.y == SILENCE).sum()) == 121
    assert len(data.train) == 24 + 668 and len(data.val) == 3 + 121 and len(data.test) == 12


def test_gsc_archives_have_the_official_member_names(tmp_path: Path) -> None:
    synthetic.write_gsc(tmp_path, words=("no",), clips_per_word=3, test_per_label=1, noise_fraction=0.01,
                        archive=True)
    with tarfile.open(tmp_path / synthetic.GSC_MAIN_ARCHIVE) as tf:
        names = tf.getnames()
    assert "./validation_list.txt" in names and "./_background_noise_/running_tap.wav" in names
    assert all(n.startswith("./") for n in names)
    with tarfile.open(tmp_path / synthetic.GSC_TEST_ARCHIVE) as tf:
        labels = {n.split("/")[1] for n in tf.getnames() if n.endswith(".wav")}
    assert labels == set(synthetic.GSC_TEST_LABELS)


def test_tiny_imagenet_layout_and_greyscale_jpegs(tmp_path: Path) -> None:
    from PIL import Image

    zpath = synthetic.write_tiny_imagenet(tmp_path, classes=200, per_class=1, val_per_class=1, test_images=2,
                                         archive=True)
    with zipfile.ZipFile(zpath) as zf:
        names = zf.namelist()
        wnids = zf.read("tiny-imagenet-200/wnids.txt").decode().split()
        notes = zf.read("tiny-imagenet-200/val/val_annotations.txt").decode().splitlines()
        modes = {Image.open(io.BytesIO(zf.read(n))).mode for n in names if n.endswith(".JPEG")}
    assert len(wnids) == len(set(wnids)) == 200 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    assert f"tiny-imagenet-200/train/{wnids[0]}/images/{wnids[0]}_0.JPEG" in names
    assert f"tiny-imagenet-200/train/{wnids[0]}/{wnids[0]}_boxes.txt" in names
    assert "tiny-imagenet-200/test/images/test_1.JPEG" in names and "tiny-imagenet-200/" in names
    assert len(notes) == 200 and all(len(line.split("\t")) == 6 for line in notes)
    assert modes == {"RGB", "L"}  # a few greyscale images, as the real set
    data = load_tiny_imagenet(tmp_path, val_size=40, progress=False)
    assert (len(data.train), len(data.val), len(data.test)) == (160, 40, 200)
    assert sorted(data.test.y.tolist()) == list(range(200))


# -- the scripts ------------------------------------------------------------------------------------------
def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synth_data_script_scales_and_refuses_to_overwrite(tmp_path: Path) -> None:
    script = _script("synth_data")
    assert script.sizes("cifar10", 1.0) == {"n_train": 50_000, "n_test": 10_000}
    assert script.sizes("gsc", 0.1) == {"clips_per_word": 302, "test_per_label": 41, "noise_fraction": 0.1}
    assert script.sizes("tiny_imagenet", 0.01) == {"per_class": 5, "val_per_class": 1, "test_images": 100}
    assert script.main(["cifar10", str(tmp_path), "--scale", "0.002"]) == 0
    data = load_cifar10(tmp_path, val_size=0.2, progress=False)
    assert (len(data.train), len(data.val), len(data.test)) == (80, 20, 20)
    assert script.main(["cifar10", str(tmp_path), "--scale", "0.002"]) == 2


def test_time_recipe_extrapolation_by_hand() -> None:
    """One-epoch run -> recipe total (scripts/time_recipe.py): epoch = train + validation, tail = test."""
    script = _script("time_recipe")
    result = {"wall_s_warmup": 30.0, "wall_s_search": 50.0, "wall_s_finetune": 25.0, "wall_s_total": 110.0}
    history = pd.DataFrame({"phase": ["warmup", "search", "finetune"], "wall_s": [20.0, 40.0, 21.0]})
    generated = {"train": 1000, "val": 200, "test": 100, "extra_test": 0}
    real = {"train": 10_000, "val": 1_000, "test": 500, "extra_test": 0}
    rows = script.extrapolate(result, history, {"warmup": 3, "search": 2, "finetune": 1}, generated, real)
    # warmup: tail 10 s for 100 test samples -> 0.1 s/sample -> validation 20 s of the 20 s epoch (capped),
    # train 0 s; real epoch = 0 * 10 + 20 * 5 = 100 s; tail 10 * 5 = 50 s; 3 epochs -> 350 s
    assert rows["warmup"]["epoch_s"] == pytest.approx(100.0)
    assert rows["warmup"]["total_s"] == pytest.approx(350.0)
    # search: tail 10 s -> val 20 s, train 20 s; real epoch = 20 * 10 + 20 * 5 = 300 s; 2 x 300 + 50 = 650 s
    assert rows["search"]["epoch_s"] == pytest.approx(300.0)
    assert rows["search"]["total_s"] == pytest.approx(650.0)
    # finetune: tail 4 s -> 0.04 s/sample -> val 8 s, train 13 s; 13 * 10 + 8 * 5 = 170 s; + 4 * 5 = 190 s
    assert rows["finetune"]["total_s"] == pytest.approx(190.0)
    # other: 110 - 105 = 5 s, scaled by the train factor 10 -> 50 s
    assert rows["other_s"] == pytest.approx(50.0)
    assert rows["total_s"] == pytest.approx(350.0 + 650.0 + 190.0 + 50.0)
    assert rows["sweep_point_s"] == pytest.approx(650.0 + 190.0 + 50.0)
