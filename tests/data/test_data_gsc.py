"""Speech Commands loader (jpq/data/gsc.py) on generated WAVs in the official folder/list/archive layout."""

from __future__ import annotations

import hashlib
import io
import math
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from jpq.data import gsc
from jpq.data.gsc import CLASS_COUNTS, LABELS, class_weights_from_counts, load_gsc, silence_windows
from jpq.data.mfcc import mfcc
from jpq.errors import DatasetError

# main set: 3 commands and 2 auxiliary words (-> _unknown_), 3 speakers each
WORDS = ("yes", "down", "bed", "marvin", "go")
SPEAKERS = ("0a1b2c3d", "1f2e3d4c", "9c8b7a6f")
VALIDATION = ("down/1f2e3d4c_nohash_0.wav", "bed/0a1b2c3d_nohash_0.wav")
TESTING = ("yes/9c8b7a6f_nohash_0.wav", "marvin/1f2e3d4c_nohash_0.wav")
# background noise lengths -> windows range(0, len - 16000, 8000)
NOISE_SAMPLES = {
    "dude_miaowing": 40_000,  # 0, 8000, 16000 -> 3
    "white_noise": 24_001,  # 0, 8000 -> 2
    "exercise_bike": 16_000,  # none
    "doing_the_dishes": 32_000,  # 0, 8000 -> 2
    "pink_noise": 16_001,  # 0 -> 1
    "running_tap": 48_000,  # 0, 8000, 16000, 24000 -> 4 (validation)
}
TEST_FILES = {"down": 2, "go": 1, "left": 1, "no": 1, "off": 1, "on": 1, "right": 1, "stop": 1, "up": 1,
              "yes": 2, "_silence_": 1, "_unknown_": 3}


def _samples(seed: int, n: int) -> np.ndarray:
    """Deterministic int16 test signal: a tone whose pitch depends on ``seed`` plus a little noise."""
    t = np.arange(n) / 16_000
    rng = np.random.default_rng(seed)
    sig = 0.3 * np.sin(2 * np.pi * (200 + 37 * seed) * t) + 0.01 * rng.standard_normal(n)
    return np.round(sig * 32767).astype(np.int16)


def _wav(samples: np.ndarray, rate: int = 16_000, channels: int = 1, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes() if width == 2 else samples.astype(np.uint8).tobytes())
    return buf.getvalue()


def _main_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    seed = 0
    for word in WORDS:
        for k, spk in enumerate(SPEAKERS):
            n = 8_000 if k == 2 else 16_000  # every third clip is short (zero padding)
            files[f"{word}/{spk}_nohash_0.wav"] = _wav(_samples(seed, n))
            seed += 1
    for name, n in NOISE_SAMPLES.items():
        files[f"_background_noise_/{name}.wav"] = _wav(_samples(100 + n % 97, n))
    files["_background_noise_/README.md"] = b"noise"
    files["validation_list.txt"] = ("\n".join(VALIDATION) + "\n").encode()
    files["testing_list.txt"] = ("\n".join(TESTING) + "\n").encode()
    files["README.md"] = b"speech commands"
    files["LICENSE"] = b"CC BY 4.0"
    return files


def _test_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for i, (label, count) in enumerate(TEST_FILES.items()):
        for k in range(count):
            files[f"{label}/{i:04x}abcd_nohash_{k}.wav"] = _wav(_samples(500 + 10 * i + k, 16_000))
    files["README.md"] = b"test set"
    return files


def _write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, raw in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
    return root


def _write_targz(path: Path, files: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for rel, raw in sorted(files.items(), reverse=True):  # any member order must work
            info = tarfile.TarInfo(f"./{rel}")  # the official members start with ./
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture()
def gsc_folders(tmp_path: Path) -> Path:
    _write_folder(tmp_path / "SpeechCommands" / "speech_commands_v0.02", _main_files())
    _write_folder(tmp_path / "SpeechCommands" / "speech_commands_test_set_v0.02", _test_files())
    return tmp_path


def _snapshot(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_splits_labels_and_features(gsc_folders: Path) -> None:
    bundle = load_gsc(gsc_folders, progress=False)
    train_clips = sorted(f"{w}/{s}_nohash_0.wav" for w in WORDS for s in SPEAKERS
                         if f"{w}/{s}_nohash_0.wav" not in VALIDATION + TESTING)
    assert len(train_clips) == 11
    assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (11 + 8, 2 + 4, sum(TEST_FILES.values()))
    label = {"yes": 9, "down": 0, "go": 1, "bed": 11, "marvin": 11}
    assert bundle.train.y.tolist() == [label[c.split("/")[0]] for c in train_clips] + [10] * 8
    assert bundle.val.y.tolist() == [0, 11] + [10] * 4
    assert bundle.test.y.tolist() == [i for i, n in enumerate(TEST_FILES.values()) for _ in range(n)]
    assert LABELS[10] == "_silence_" and LABELS[11] == "_unknown_"
    assert bundle.input_shape == (1, 49, 10) and bundle.train.x.shape[1:] == (1, 49, 10)
    assert bundle.num_classes == 12 and bundle.augment is None and bundle.augment_val is False
    iq = bundle.input_quant
    assert (iq.signed, iq.lo, iq.hi, iq.bits) == (True, -6.0, 6.0, (8,))

    # features: int16 / 2^15, zero-padded to 16,000 samples, MFCC of §3.3
    files = _main_files()

    def feats(samples: np.ndarray) -> torch.Tensor:
        padded = np.zeros(16_000)
        padded[: len(samples)] = samples[:16_000] / 32768.0
        return mfcc(torch.from_numpy(padded)[None])[0]

    def wav_samples(rel: str) -> np.ndarray:
        with wave.open(io.BytesIO(files[rel])) as w:
            return np.frombuffer(w.readframes(w.getnframes()), "<i2")

    for i in (0, 2, 10):  # clip 2 (bed/9c8b..., 8,000 samples) is a padded short clip
        torch.testing.assert_close(bundle.train.x[i, 0], feats(wav_samples(train_clips[i])))
    noise = wav_samples("_background_noise_/dude_miaowing.wav")
    torch.testing.assert_close(bundle.train.x[11, 0], feats(noise[:16_000]))  # first silence window
    torch.testing.assert_close(bundle.train.x[13, 0], feats(noise[16_000:32_000]))  # third window
    tap = wav_samples("_background_noise_/running_tap.wav")
    torch.testing.assert_close(bundle.val.x[5, 0], feats(tap[24_000:40_000]))  # last validation window
    torch.testing.assert_close(bundle.val.x[0, 0], feats(wav_samples(VALIDATION[0])))


def test_silence_window_formula() -> None:
    """range(0, len - 16000, 8000): a 60 s file gives 118 windows, an exact 1 s file none."""
    assert len(silence_windows(np.zeros(60 * 16_000, np.int16))) == 118
    assert len(silence_windows(np.zeros(16_000, np.int16))) == 0
    assert [len(silence_windows(np.zeros(n, np.int16))) for n in NOISE_SAMPLES.values()] == [3, 2, 0, 2, 1, 4]


def test_class_weights(gsc_folders: Path) -> None:
    bundle = load_gsc(gsc_folders, progress=False)
    counts = torch.bincount(bundle.train.y, minlength=12).tolist()
    assert counts == [2, 3, 0, 0, 0, 0, 0, 0, 0, 2, 8, 4]  # down, go, ..., yes, silence, unknown
    expected = [19 / 2, 19 / 3, 19, 19, 19, 19, 19, 19, 19, 19 / 2, 19 / 8, 19 / 4]  # N / max(N_c, 1)
    torch.testing.assert_close(bundle.class_weights, torch.tensor(expected))
    assert load_gsc(gsc_folders, class_weights=False, progress=False).class_weights is None


def test_paper_class_counts_golden() -> None:
    """docs/benchmarks.md §3.2/§3.5: 85,511 clips; weights ~27.6 keywords, 128 silence, 1.58 unknown."""
    assert sum(CLASS_COUNTS) == 85_511
    w = class_weights_from_counts(torch.tensor(CLASS_COUNTS))
    assert math.isclose(float(w[0]), 85_511 / 3134, rel_tol=1e-6)
    assert math.isclose(float(w[10]), 128.0105, rel_tol=1e-5)
    assert math.isclose(float(w[11]), 1.58136, rel_tol=1e-5)
    assert 27.0 < float(w[:10].mean()) < 28.2


def test_archives_equal_folders_and_user_files_untouched(gsc_folders: Path, tmp_path: Path) -> None:
    from_folders = load_gsc(gsc_folders, progress=False)
    arch = tmp_path / "archives"
    _write_targz(arch / "speech_commands_v0.02.tar.gz", _main_files())
    _write_targz(arch / "speech_commands_test_set_v0.02.tar.gz", _test_files())
    before = _snapshot(arch)
    from_archives = load_gsc(arch, progress=True)
    for a, b in [(from_folders.train, from_archives.train), (from_folders.val, from_archives.val),
                 (from_folders.test, from_archives.test)]:
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    after = _snapshot(arch)
    assert {k: v for k, v in after.items() if not k.startswith("jpq_cache/")} == before
    assert len([k for k in after if k.startswith("jpq_cache/gsc-")]) == 1


def test_cache_is_reused(gsc_folders: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = gsc_folders / "SpeechCommands" / "speech_commands_v0.02"
    before = _snapshot(src)
    first = load_gsc(gsc_folders, progress=False)
    assert _snapshot(src) == before

    def no_decoding(raw: bytes, name: str) -> np.ndarray:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(gsc, "read_wav", no_decoding)
    second = load_gsc(gsc_folders, progress=False)
    assert torch.equal(first.train.x, second.train.x) and torch.equal(first.test.y, second.test.y)
    # a changed source (one more clip) invalidates the key and is decoded again
    (src / "go" / "abcdef01_nohash_0.wav").write_bytes(_wav(_samples(77, 16_000)))
    with pytest.raises(AssertionError, match="cache"):
        load_gsc(gsc_folders, progress=False)


@pytest.mark.parametrize(
    "kwargs", [{"rate": 44_100}, {"channels": 2}, {"width": 1}], ids=["rate", "stereo", "8bit"]
)
def test_wrong_wav_format(gsc_folders: Path, kwargs: dict[str, int]) -> None:
    bad = gsc_folders / "SpeechCommands" / "speech_commands_v0.02" / "yes" / "0a1b2c3d_nohash_0.wav"
    samples = _samples(1, 16_000 * kwargs.get("channels", 1))
    bad.write_bytes(_wav(samples if kwargs.get("width", 2) == 2 else np.zeros(16_000), **kwargs))
    with pytest.raises(DatasetError, match="0a1b2c3d_nohash_0.wav"):
        load_gsc(gsc_folders, progress=False)


def test_not_a_wav(gsc_folders: Path) -> None:
    clip = gsc_folders / "SpeechCommands" / "speech_commands_v0.02" / "go" / "0a1b2c3d_nohash_0.wav"
    clip.write_bytes(b"RIFX")
    with pytest.raises(DatasetError, match="not a readable PCM WAV"):
        load_gsc(gsc_folders, progress=False)


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"speech_commands_v0\.02\.tar\.gz"):
        load_gsc(tmp_path, progress=False)
    main = _main_files()
    _write_folder(tmp_path / "speech_commands_v0.02", main)
    with pytest.raises(DatasetError, match=r"speech_commands_test_set_v0\.02\.tar\.gz"):
        load_gsc(tmp_path, progress=False)
    _write_folder(tmp_path / "speech_commands_test_set_v0.02", _test_files())
    (tmp_path / "speech_commands_v0.02" / "_background_noise_" / "running_tap.wav").unlink()
    with pytest.raises(DatasetError, match="running_tap.wav missing"):
        load_gsc(tmp_path, progress=False)
    (tmp_path / "speech_commands_v0.02" / "_background_noise_" / "running_tap.wav").write_bytes(
        main["_background_noise_/running_tap.wav"])
    (tmp_path / "speech_commands_v0.02" / VALIDATION[0]).unlink()
    with pytest.raises(DatasetError, match="validation_list.txt names 1 file"):
        load_gsc(tmp_path, progress=False)


def test_corrupt_archive(tmp_path: Path) -> None:
    _write_folder(tmp_path / "speech_commands_test_set_v0.02", _test_files())
    (tmp_path / "speech_commands_v0.02.tar.gz").write_bytes(b"\x1f\x8b\x08\x00" + bytes(64))
    with pytest.raises(DatasetError, match="2,428,923,189"):
        load_gsc(tmp_path, progress=False)
