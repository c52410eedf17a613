"""Google Speech Commands v0.02, 12-class keyword spotting for the DS-CNN benchmark (docs/benchmarks.md §3).

Sources, each either the official archive (read in place, streamed once, never extracted) or its
extracted folder, all under ``data_dir``:

* main set: ``speech_commands_v0.02.tar.gz`` or ``SpeechCommands/speech_commands_v0.02/`` (the
  reference layout) or ``speech_commands_v0.02/``: ``<word>/<speaker>_nohash_<k>.wav``,
  ``_background_noise_/*.wav``, ``validation_list.txt``, ``testing_list.txt`` (§3.1);
* test set: ``speech_commands_test_set_v0.02.tar.gz`` or ``[SpeechCommands/]speech_commands_test_set_v0.02/``:
  ``<label>/*.wav`` with the 12 label folders (``_silence_`` and ``_unknown_`` included).

Splits (§3.2, reproducing TFDS ``speech_commands``: 85,511 / 10,102 / 4,890):

* training = every ``<word>/*_nohash_*.wav`` of the main set in neither list, sorted, then the silence
  windows (1 s every 0.5 s, ``range(0, len - 16000, 8000)``) of five background files -> 668;
* validation = ``validation_list.txt`` (file order), then the windows of ``running_tap.wav`` -> 121;
* testing = every ``*/*.wav`` of the separate test archive, folder = label, ordered by (label, path)
  (``testing_list.txt`` is *not* used for testing: those clips are simply left out of training);
* labels: the 10 commands alphabetically, ``_silence_`` 10, ``_unknown_`` 11 (the 25 other words, not
  down-sampled).

Features (§3.3): int16 PCM read with ``wave``, right-padded with zeros to 16,000 samples, / 2^15, then
the 49 x 10 MFCC of :mod:`jpq.data.mfcc`; no augmentation. They are computed once and cached in
``<data_dir>/jpq_cache/gsc-<hash>.pt`` keyed by the source listings and the front-end settings.
"""

from __future__ import annotations

import io
import os
import tarfile
import wave
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from jpq.data import mfcc as _mfcc
from jpq.data.base import DataBundle, InputQuant, Split
from jpq.data.download import cache_path, load_cache, locate, save_cache, size_hint, source_fingerprint
from jpq.errors import DatasetError

WORDS = ("down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes")
LABELS = (*WORDS, "_silence_", "_unknown_")
SILENCE = 10
UNKNOWN = 11
NUM_CLASSES = 12
INPUT_SHAPE = (1, _mfcc.N_FRAMES, _mfcc.N_MFCC)  # (1, 49, 10): C=1, H=time, W=coefficient

NOISE_DIR = "_background_noise_"
TRAIN_NOISE = ("dude_miaowing", "white_noise", "exercise_bike", "doing_the_dishes", "pink_noise")
VAL_NOISE = ("running_tap",)
SILENCE_HOP = 8_000  # 0.5 s between silence windows
VALIDATION_LIST = "validation_list.txt"
TESTING_LIST = "testing_list.txt"

MAIN_FOLDERS = ("SpeechCommands/speech_commands_v0.02", "speech_commands_v0.02")
TEST_FOLDERS = ("SpeechCommands/speech_commands_test_set_v0.02", "speech_commands_test_set_v0.02")

#: Training class counts of the full dataset, hard-coded in the paper scripts (docs/benchmarks.md §3.2).
CLASS_COUNTS = (3134, 3106, 3037, 3130, 2970, 3086, 3019, 3111, 2948, 3228, 668, 54074)

CACHE_VERSION = 1
CHUNK_CLIPS = 512  # clips per vectorised MFCC call (~50 MB of float32 frames, ~0.1 s)


def class_weights_from_counts(counts: Tensor) -> Tensor:
    """``w_c = N_total / N_c`` (not normalised), the paper scripts' weighted CE (docs/benchmarks.md §3.5).

    A class absent from the training data (only possible with subset data) gets ``N_total`` as if it
    had one sample, so the weights stay finite.
    """
    counts = counts.to(torch.float64)
    return (counts.sum() / counts.clamp(min=1.0)).to(torch.float32)


def read_wav(raw: bytes, name: str) -> np.ndarray:
    """Samples of a 16-bit PCM, mono, 16 kHz WAV as int16 (§3.1); anything else is a DatasetError."""
    try:
        with wave.open(io.BytesIO(raw), "rb") as w:
            if w.getnchannels() != 1 or w.getsampwidth() != 2 or w.getframerate() != _mfcc.SAMPLE_RATE:
                raise DatasetError(
                    f"{name}: expected 16-bit mono {_mfcc.SAMPLE_RATE} Hz PCM, got {w.getnchannels()} "
                    f"channel(s), {8 * w.getsampwidth()} bit, {w.getframerate()} Hz"
                )
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise DatasetError(f"{name} is not a readable PCM WAV file ({e})") from e
    return np.frombuffer(frames, dtype="<i2").astype(np.int16)


def _clip_to_float(samples: np.ndarray) -> np.ndarray:
    """Right-pad with zeros (or cut) to 16,000 samples and scale by 2^-15 (§3.3 step 1; exact in float32)."""
    out = np.zeros(_mfcc.CLIP_SAMPLES, dtype=np.float32)
    n = min(len(samples), _mfcc.CLIP_SAMPLES)
    out[:n] = samples[:n] / 32768.0
    return out


def silence_windows(samples: np.ndarray) -> list[np.ndarray]:
    """1 s windows every 0.5 s of a background-noise file: starts ``range(0, len - 16000, 8000)`` (§3.2)."""
    starts = range(0, len(samples) - _mfcc.CLIP_SAMPLES, SILENCE_HOP)
    return [samples[s : s + _mfcc.CLIP_SAMPLES] for s in starts]


def _normalise(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def _iter_files(source: Path, what: str, key: str) -> Iterator[tuple[str, bytes]]:
    """(relative posix path, bytes) of each ``.wav``/``.txt`` in a folder (sorted walk) or a tar (stream)."""
    if source.is_dir():
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for fname in sorted(files):
                if fname.endswith((".wav", ".txt")):
                    full = Path(root) / fname
                    yield full.relative_to(source).as_posix(), full.read_bytes()
        return
    try:
        with tarfile.open(source, "r|*") as tf:
            for member in tf:
                if member.isfile() and member.name.endswith((".wav", ".txt")):
                    fh = tf.extractfile(member)
                    if fh is not None:
                        yield _normalise(member.name), fh.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise DatasetError(
            f"{source} is not a readable {what} tar.gz archive ({e}){size_hint(source, key)}; "
            "delete it and fetch it again"
        ) from e


class _Featurizer:
    """Collects clips and turns them into MFCCs in vectorised chunks (§3.3)."""

    def __init__(self, advance: Callable[[int], None]) -> None:
        self.front_end = _mfcc.MfccFrontEnd()
        self.keys: list[str] = []
        self.chunks: list[Tensor] = []
        self.buffer = np.zeros((CHUNK_CLIPS, _mfcc.CLIP_SAMPLES), dtype=np.float32)
        self.filled = 0
        self.advance = advance

    def add(self, key: str, samples: np.ndarray) -> None:
        self.keys.append(key)
        self.buffer[self.filled] = _clip_to_float(samples)
        self.filled += 1
        if self.filled == CHUNK_CLIPS:
            self.flush()

    def flush(self) -> None:
        if self.filled:
            self.chunks.append(self.front_end(torch.from_numpy(self.buffer[: self.filled])))
            self.advance(self.filled)
            self.filled = 0

    def result(self) -> tuple[dict[str, int], Tensor]:
        """(key -> row, features (N, 49, 10))."""
        self.flush()
        feats = torch.cat(self.chunks) if self.chunks else torch.zeros(0, _mfcc.N_FRAMES, _mfcc.N_MFCC)
        return {k: i for i, k in enumerate(self.keys)}, feats


def _read_list(raw: bytes) -> list[str]:
    return [_normalise(line.strip()) for line in raw.decode("utf-8").splitlines() if line.strip()]


def _label_of_word(word: str) -> int:
    return WORDS.index(word) if word in WORDS else UNKNOWN


def _extract(main: Path, test: Path, advance: Callable[[int], None]) -> dict[str, Tensor]:
    """Stream both sources once, featurise every clip and silence window, assemble the three splits."""
    feat = _Featurizer(advance)
    noise: dict[str, np.ndarray] = {}
    lists: dict[str, list[str]] = {}
    clips: list[str] = []
    for rel, raw in _iter_files(main, "Speech Commands", "gsc"):
        parts = rel.split("/")
        if len(parts) == 1 and parts[0] in (VALIDATION_LIST, TESTING_LIST):
            lists[parts[0]] = _read_list(raw)
        elif len(parts) == 2 and parts[0] == NOISE_DIR and parts[1].endswith(".wav"):
            noise[parts[1][: -len(".wav")]] = read_wav(raw, rel)
        elif len(parts) == 2 and parts[1].endswith(".wav") and "_nohash_" in parts[1]:
            feat.add(rel, read_wav(raw, rel))
            clips.append(rel)
    missing = [n for n in (VALIDATION_LIST, TESTING_LIST) if n not in lists]
    missing += [f"{NOISE_DIR}/{n}.wav" for n in (*TRAIN_NOISE, *VAL_NOISE) if n not in noise]
    if missing:
        raise DatasetError(f"Speech Commands main set {main} is incomplete: {', '.join(missing)} missing")
    for name in (*TRAIN_NOISE, *VAL_NOISE):
        for i, window in enumerate(silence_windows(noise[name])):
            feat.add(f"{NOISE_DIR}/{name}.wav@{i}", window)

    test_keys: list[tuple[str, int]] = []
    for rel, raw in _iter_files(test, "Speech Commands test", "gsc_test"):
        parts = rel.split("/")
        if not rel.endswith(".wav") or len(parts) < 2:
            continue
        label = parts[-2]
        if label not in LABELS:
            raise DatasetError(f"Speech Commands test set {test}: {rel} is in an unknown label folder")
        key = f"test:{rel}"
        feat.add(key, read_wav(raw, rel))
        test_keys.append((key, LABELS.index(label)))

    test_keys.sort(key=lambda item: (item[1], item[0]))  # by label, then path: independent of member order
    rows, x = feat.result()
    clip_set = set(clips)
    for list_name in (VALIDATION_LIST, TESTING_LIST):
        absent = [p for p in lists[list_name] if p not in clip_set]
        if absent:
            raise DatasetError(
                f"Speech Commands {list_name} names {len(absent)} file(s) missing from {main}, "
                f"e.g. {absent[0]}"
            )
    held_out = set(lists[VALIDATION_LIST]) | set(lists[TESTING_LIST])

    def gather(keys: list[str], labels: list[int]) -> tuple[Tensor, Tensor]:
        idx = torch.tensor([rows[k] for k in keys], dtype=torch.int64)
        return x[idx].unsqueeze(1).contiguous(), torch.tensor(labels, dtype=torch.int64)

    def silence_keys(names: tuple[str, ...]) -> list[str]:
        return [f"{NOISE_DIR}/{n}.wav@{i}" for n in names for i in range(len(silence_windows(noise[n])))]

    train_clips = sorted(c for c in clips if c not in held_out)
    train_sil = silence_keys(TRAIN_NOISE)
    val_clips = lists[VALIDATION_LIST]
    val_sil = silence_keys(VAL_NOISE)
    train_y = [_label_of_word(c.split("/")[0]) for c in train_clips] + [SILENCE] * len(train_sil)
    val_y = [_label_of_word(c.split("/")[0]) for c in val_clips] + [SILENCE] * len(val_sil)
    out: dict[str, Tensor] = {}
    out["train_x"], out["train_y"] = gather(train_clips + train_sil, train_y)
    out["val_x"], out["val_y"] = gather(val_clips + val_sil, val_y)
    out["test_x"], out["test_y"] = gather([k for k, _ in test_keys], [lab for _, lab in test_keys])
    return out


def _cache_key(main: Path, test: Path) -> dict[str, object]:
    return {
        "version": CACHE_VERSION,
        "main": source_fingerprint(main),
        "test": source_fingerprint(test),
        "front_end": [
            _mfcc.SAMPLE_RATE, _mfcc.N_FFT, _mfcc.WIN_LENGTH, _mfcc.HOP_LENGTH, _mfcc.N_MELS, _mfcc.N_MFCC,
            _mfcc.F_MIN_HZ, _mfcc.F_MAX_HZ, _mfcc.LOG_OFFSET,
        ],
        "silence": [TRAIN_NOISE, VAL_NOISE, SILENCE_HOP],
    }


def _with_progress(
    progress: bool, run: Callable[[Callable[[int], None]], dict[str, Tensor]]
) -> dict[str, Tensor]:
    """The one-off extraction with a rich clip counter (docs/architecture.md §5: long work shows progress)."""
    if not progress:
        return run(lambda n: None)
    from rich.progress import MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task("GSC: MFCC features (once, then cached)", total=None)
        return run(lambda n: bar.update(task, advance=n))


def load_gsc(
    data_dir: str | Path,
    *,
    download: bool = False,
    seed: int = 14,
    class_weights: bool = True,
    progress: bool = True,
) -> DataBundle:
    """Speech Commands v0.02 as MFCC tensors (1, 49, 10) with the official splits (§3.2).

    ``seed`` is accepted for a uniform loader signature but unused: the splits are the official lists.
    ``class_weights``: attach ``N_total / N_c`` of the training labels (paper recipe, §3.5; on the full
    data these are exactly the weights of :data:`CLASS_COUNTS`).
    """
    del seed
    main = locate(
        data_dir, key="gsc", folders=MAIN_FOLDERS, marker=VALIDATION_LIST, download=download,
        progress=progress, what="Speech Commands v0.02",
    )
    test = _locate_test(Path(data_dir), download=download, progress=progress)
    path = cache_path(data_dir, "gsc", _cache_key(main, test))
    cached = load_cache(path)
    names = ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y")
    if cached is None or any(n not in cached for n in names):
        cached = _with_progress(progress, lambda advance: _extract(main, test, advance))
        save_cache(path, cached)
    train = Split(cached["train_x"], cached["train_y"])
    weights = None
    if class_weights:
        weights = class_weights_from_counts(torch.bincount(train.y, minlength=NUM_CLASSES))
    return DataBundle(
        name="gsc",
        train=train,
        val=Split(cached["val_x"], cached["val_y"]),
        test=Split(cached["test_x"], cached["test_y"]),
        num_classes=NUM_CLASSES,
        input_shape=INPUT_SHAPE,
        augment=None,
        augment_val=False,
        class_weights=weights,
        input_quant=InputQuant(signed=True, lo=-6.0, hi=6.0, bits=(8,)),
    )


def _locate_test(data_dir: Path, *, download: bool, progress: bool) -> Path:
    """The test folder is recognised by its ``_unknown_`` label folder (it has no list file)."""
    return locate(
        data_dir, key="gsc_test", folders=TEST_FOLDERS, marker="_unknown_", download=download,
        progress=progress, what="Speech Commands v0.02 test set",
    )
