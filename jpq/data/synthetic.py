"""Random stand-ins for the paper's datasets, written in the exact official file formats.

Tests and timing runs cannot download CIFAR-10, Speech Commands or Tiny ImageNet (benchmarks.md §8:
"tests generate small files in the exact official formats ... and run the real loaders on them"), so
these writers produce the distributed layouts byte-format for byte-format, filled with random content:

* :func:`write_cifar10` - ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
  ``batches.meta``, ``readme.html``) or ``cifar-10-python.tar.gz`` (§2.1). The batches are Python-2
  style protocol-2 pickles (byte strings as ``BINSTRING``, numpy arrays via
  ``numpy.core.multiarray._reconstruct``), i.e. what ``pickle.load(f, encoding='bytes')`` reads from
  the official files;
* :func:`write_gsc` - the Speech Commands v0.02 main set (35 word folders of
  ``<8-hex speaker>_nohash_<k>.wav``, ``_background_noise_/`` with the six noise files,
  ``validation_list.txt``/``testing_list.txt`` assigned by the TensorFlow ``which_set`` SHA-1 rule so
  that a speaker never straddles splits) and the separate test set with its 12 label folders (§3.1);
  WAVs are 16-bit PCM mono 16 kHz written with :mod:`wave`, some clips shorter than 1 s;
* :func:`write_tiny_imagenet` - ``tiny-imagenet-200/`` or ``tiny-imagenet-200.zip``: ``wnids.txt``,
  ``words.txt``, ``train/<wnid>/images/<wnid>_<k>.JPEG`` + ``<wnid>_boxes.txt``,
  ``val/images/val_<k>.JPEG`` + ``val/val_annotations.txt``, ``test/images/test_<k>.JPEG`` (§4.1);
  64x64 JPEGs via Pillow, a few of them greyscale like the real set.

The content is noise plus a weak class-dependent pattern (a coloured block template per image class, a
pure tone per spoken word), so a network can learn a little and runs are not pure chance; accuracy on it
means nothing. Every writer refuses to overwrite an existing dataset (it might be the user's real one),
builds into a temporary name and renames at the end (an interrupted run never leaves a half dataset
that a loader would accept), and marks its output as synthetic in a readme file the loaders ignore.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import struct
import tarfile
import wave
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# -- official names (benchmarks.md §2.1, §3.1, §4.1) ----------------------------------------------------
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR_LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR_PER_BATCH = 10_000

#: the 35 words of v0.02: 10 commands, 10 digits, 10 auxiliary words, 5 v0.02 additions (§3.1)
GSC_COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
GSC_WORDS = (
    *GSC_COMMANDS,
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "backward", "forward", "follow", "learn", "visual",
)
GSC_TEST_LABELS = (
    "down", "go", "left", "no", "off", "on", "right", "stop", "up", "yes", "_silence_", "_unknown_",
)
GSC_MAIN_FOLDER = "SpeechCommands/speech_commands_v0.02"  # the reference loader's extraction folders (§3.2)
GSC_TEST_FOLDER = "SpeechCommands/speech_commands_test_set_v0.02"
GSC_MAIN_ARCHIVE = "speech_commands_v0.02.tar.gz"
GSC_TEST_ARCHIVE = "speech_commands_test_set_v0.02.tar.gz"
GSC_NOISE_DIR = "_background_noise_"
#: silence windows per background file (1 s every 0.5 s). The totals are official (668 train windows from
#: five files, 121 from running_tap, §3.2); the split of the 668 over the five files is our assumption,
#: consistent with files of about 60-95 s.
GSC_NOISE_WINDOWS: dict[str, int] = {
    "doing_the_dishes": 189,
    "dude_miaowing": 122,
    "exercise_bike": 121,
    "pink_noise": 118,
    "white_noise": 118,
    "running_tap": 121,
}
#: the full v0.02 sizes: 105,829 clips in the main set, 4,890 in the test set (§3.1)
GSC_TOTAL_CLIPS = 105_829
GSC_TEST_CLIPS = 4_890
SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000
SILENCE_HOP = 8_000
_MAX_WAVS_PER_CLASS = 2**27 - 1  # TensorFlow speech_commands which_set constant

TIN_FOLDER = "tiny-imagenet-200"
TIN_ARCHIVE = "tiny-imagenet-200.zip"
TIN_SIZE = 64

SYNTHETIC_NOTE = (
    "SYNTHETIC DATA written by jpq.data.synthetic: random noise in the official file layout, for tests "
    "and timing only. It is not the real dataset; accuracies measured on it mean nothing.\n"
)


# -- shared helpers --------------------------------------------------------------------------------------
def _claim(target: Path) -> Path:
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


def _commit(tmp: Path, target: Path) -> Path:
    os.replace(tmp, target)
    return target


def _block_templates(rng: np.random.Generator, n_classes: int, size: int, cells: int) -> np.ndarray:
    """One uint8 (3, size, size) pattern per class: a random ``cells x cells`` colour grid, upsampled."""
    grid = rng.integers(0, 256, size=(n_classes, 3, cells, cells), dtype=np.uint8)
    rep = size // cells
    return grid.repeat(rep, axis=2).repeat(rep, axis=3)


def _mix(noise: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Average of noise and class template, in uint16 to stay exact and cheap."""
    return ((noise.astype(np.uint16) + template.astype(np.uint16)) >> 1).astype(np.uint8)


def _balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    """``n`` labels, classes as equal as possible (the official splits are balanced), shuffled."""
    labels = np.arange(n, dtype=np.int64) % n_classes
    rng.shuffle(labels)
    return labels


# -- CIFAR-10 ---------------------------------------------------------------------------------------------
class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]  # pure-Python pickler: overridable
    """Protocol 2 as Python 2's cPickle wrote the official batches: byte strings as ``(SHORT_)BINSTRING``
    (read back as ``bytes`` with ``encoding='bytes'``) and numpy's ``numpy.core.multiarray`` path, so
    old and new readers alike accept the files (benchmarks.md §2.1)."""

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
    labels = _balanced_labels(rng, n, len(CIFAR_LABEL_NAMES))
    noise = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    data = _mix(noise, templates[labels]).reshape(n, 3 * 32 * 32)  # row: 1024 R, 1024 G, 1024 B
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
    """Write CIFAR-10 in the official python format under ``root`` (benchmarks.md §2.1).

    ``n_train`` images go into the five ``data_batch_*`` files (10,000 each at the real size; otherwise as
    equal as possible), ``n_test`` into ``test_batch``; labels are balanced. ``archive=True`` writes
    ``root/cifar-10-python.tar.gz`` (members under ``cifar-10-batches-py/``) instead of the folder.
    Returns the folder or archive path; pass ``data_dir=root`` to jpq.
    """
    if n_train < 5 or n_test < 1:
        raise ValueError(f"CIFAR-10 needs n_train >= 5 (five batches), n_test >= 1; got {n_train}, {n_test}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    templates = _block_templates(rng, len(CIFAR_LABEL_NAMES), 32, 4)
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
        tmp = _claim(target)
        _write_tar(tmp, [(f"{CIFAR_FOLDER}/{name}", files[name]) for name in order], dirs=[CIFAR_FOLDER])
        return _commit(tmp, target)
    target = root / CIFAR_FOLDER
    tmp = _claim(target)
    tmp.mkdir()
    for name in order:
        (tmp / name).write_bytes(files[name])
    return _commit(tmp, target)


def _write_tar(path: Path, members: Iterator[tuple[str, bytes]] | list[tuple[str, bytes]],
               dirs: Sequence[str] = ()) -> None:
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


# -- Google Speech Commands v0.02 --------------------------------------------------------------------------
def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """TensorFlow's speech_commands split rule (§3.1): SHA-1 of the speaker part (before ``_nohash_``).

    Returns ``"validation"``, ``"testing"`` or ``"training"``; every clip of a speaker lands in the same
    split, which is how the official ``validation_list.txt``/``testing_list.txt`` were made.
    """
    base = filename.rsplit("/", 1)[-1]
    speaker = base.split("_nohash_", 1)[0]
    digest = int(hashlib.sha1(speaker.encode("utf-8")).hexdigest(), 16)
    percentage = (digest % (_MAX_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "testing"
    return "training"


def wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """A RIFF WAV, 16-bit signed PCM, mono (the format of every Speech Commands file, §3.1)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return buf.getvalue()


class _Voice:
    """Synthetic utterances: a word-specific tone in noise, random length (some clips shorter than 1 s)."""

    def __init__(self, rng: np.random.Generator, short_fraction: float = 0.1) -> None:
        self.rng = rng
        self.short_fraction = short_fraction
        self.t = np.arange(CLIP_SAMPLES, dtype=np.float32) / SAMPLE_RATE

    def clip(self, tone_hz: float) -> np.ndarray:
        n = CLIP_SAMPLES
        if self.rng.random() < self.short_fraction:
            n = int(self.rng.integers(CLIP_SAMPLES // 2, CLIP_SAMPLES))
        amp = float(self.rng.uniform(0.05, 0.4))
        sig = amp * np.sin(2 * np.pi * tone_hz * self.t[:n] + float(self.rng.uniform(0, 2 * np.pi)))
        sig += 0.02 * self.rng.standard_normal(n).astype(np.float32)
        return np.clip(np.round(sig * 32767.0), -32768, 32767).astype(np.int16)

    def noise(self, n: int) -> np.ndarray:
        level = float(self.rng.uniform(0.02, 0.2))
        sig = level * self.rng.standard_normal(n).astype(np.float32)
        return np.clip(np.round(sig * 32767.0), -32768, 32767).astype(np.int16)


def _tone_of(word: str) -> float:
    """Word -> tone frequency (Hz), fixed by the word so the main and test sets agree."""
    return 200.0 + 90.0 * GSC_WORDS.index(word) if word in GSC_WORDS else 150.0


def _speaker_pools(rng: np.random.Generator, per_split: int) -> dict[str, list[str]]:
    """Random 8-hex speaker ids bucketed by :func:`which_set` (at least ``per_split`` per split)."""
    pools: dict[str, list[str]] = {"training": [], "validation": [], "testing": []}
    seen: set[str] = set()
    while min(len(p) for p in pools.values()) < per_split:
        spk = f"{int(rng.integers(0, 2**32)):08x}"
        if spk not in seen:
            seen.add(spk)
            pools[which_set(spk + "_nohash_0.wav")].append(spk)
    return pools


def _gsc_main_files(
    rng: np.random.Generator, clips: Mapping[str, int], noise_fraction: float
) -> Iterator[tuple[str, bytes]]:
    """(relative path, bytes) of the main set: word clips, noise files, the two lists, readme."""
    voice = _Voice(rng)
    total = sum(clips.values())
    # about 10 clips per speaker as in the real set (105,829 clips, ~2,600 speakers)
    pools = _speaker_pools(rng, max(1, total // 100))
    lists: dict[str, list[str]] = {"validation": [], "testing": []}
    counter: dict[tuple[str, str], int] = {}
    for word in sorted(clips):
        n = clips[word]
        # 10 % / 10 % / 80 % of the clips, at least one in each held-out list when there are >= 3
        n_val = max(1, round(0.1 * n)) if n >= 3 else 0
        n_test = max(1, round(0.1 * n)) if n >= 3 else 0
        splits = ["validation"] * n_val + ["testing"] * n_test + ["training"] * (n - n_val - n_test)
        tone = _tone_of(word)
        for split in splits:
            pool = pools[split]
            spk = pool[int(rng.integers(0, len(pool)))]
            k = counter.get((spk, word), 0)
            counter[(spk, word)] = k + 1
            rel = f"{word}/{spk}_nohash_{k}.wav"
            if split != "training":
                lists[split].append(rel)
            yield rel, wav_bytes(voice.clip(tone))
    for name, windows in GSC_NOISE_WINDOWS.items():
        n_win = max(1, round(windows * noise_fraction))
        n_samples = CLIP_SAMPLES + SILENCE_HOP * (n_win - 1) + 1  # range(0, len - 16000, 8000) -> n_win
        yield f"{GSC_NOISE_DIR}/{name}.wav", wav_bytes(voice.noise(n_samples))
    yield f"{GSC_NOISE_DIR}/README.md", b"Background noise files (synthetic: white noise at random levels).\n"
    yield "validation_list.txt", "".join(f"{p}\n" for p in sorted(lists["validation"])).encode()
    yield "testing_list.txt", "".join(f"{p}\n" for p in sorted(lists["testing"])).encode()
    yield "README.md", SYNTHETIC_NOTE.encode()
    yield "LICENSE", b"Synthetic data, no license restrictions.\n"


def _gsc_test_files(rng: np.random.Generator, per_label: Mapping[str, int]) -> Iterator[tuple[str, bytes]]:
    """The separate test set: ``<label>/<speaker>_nohash_<k>.wav`` in the 12 label folders."""
    voice = _Voice(rng)
    aux = [w for w in GSC_WORDS if w not in GSC_COMMANDS]
    for label in GSC_TEST_LABELS:
        for k in range(per_label.get(label, 0)):
            spk = f"{int(rng.integers(0, 2**32)):08x}"
            if label == "_silence_":
                samples = voice.noise(CLIP_SAMPLES)
            elif label == "_unknown_":
                samples = voice.clip(_tone_of(aux[int(rng.integers(0, len(aux)))]))
            else:
                samples = voice.clip(_tone_of(label))
            yield f"{label}/{spk}_nohash_{k}.wav", wav_bytes(samples)
    yield "README.md", SYNTHETIC_NOTE.encode()
    yield "LICENSE", b"Synthetic data, no license restrictions.\n"


def _write_tree(target: Path, files: Iterator[tuple[str, bytes]]) -> Path:
    tmp = _claim(target)
    for rel, data in files:
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return _commit(tmp, target)


def _write_gsc_tar(target: Path, files: Iterator[tuple[str, bytes]]) -> Path:
    """The official archives have no top folder: members are ``./<word>/<file>.wav`` (§3.1)."""
    tmp = _claim(target)
    _write_tar(tmp, ((f"./{rel}", data) for rel, data in files))
    return _commit(tmp, target)


def write_gsc(
    root: str | Path,
    *,
    clips_per_word: int | Mapping[str, int] = 3_024,
    words: Sequence[str] = GSC_WORDS,
    test_per_label: int | Mapping[str, int] = 408,
    noise_fraction: float = 1.0,
    seed: int = 0,
    archive: bool = False,
) -> Path:
    """Write Speech Commands v0.02 (main set + separate test set) under ``root`` (benchmarks.md §3.1).

    ``clips_per_word``: clips of each word in ``words`` (a subset of the 35 is allowed; a mapping gives
    per-word counts); 3,024 x 35 = 105,840, about the real 105,829. 10 % / 10 % of each word's clips go
    to ``validation_list.txt`` / ``testing_list.txt`` through speakers whose SHA-1 ``which_set`` bucket
    is that split. ``test_per_label``: clips per test-set label folder (408 x 12 = 4,896, about the real
    4,890). ``noise_fraction`` scales the six background-noise files (1.0 = the official 668 + 121
    silence windows). Folders are written as the reference extracts them,
    ``root/SpeechCommands/speech_commands_v0.02/`` and ``.../speech_commands_test_set_v0.02/``; with
    ``archive=True`` the two official ``.tar.gz`` files go into ``root`` instead. Returns the main set's
    folder or archive; pass ``data_dir=root`` to jpq.
    """
    unknown = [w for w in words if w not in GSC_WORDS]
    if unknown:
        raise ValueError(f"not Speech Commands v0.02 words: {unknown}")
    if not 0.0 < noise_fraction:
        raise ValueError(f"noise_fraction must be > 0, got {noise_fraction}")
    if isinstance(clips_per_word, Mapping):
        clips = dict(clips_per_word)
    else:
        clips = dict.fromkeys(words, clips_per_word)
    if isinstance(test_per_label, Mapping):
        tests = dict(test_per_label)
    else:
        tests = dict.fromkeys(GSC_TEST_LABELS, test_per_label)
    if not any(tests.values()):
        raise ValueError("the test set needs at least one clip")
    root = Path(root)
    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng([seed, 1])
    if archive:
        main = _write_gsc_tar(root / GSC_MAIN_ARCHIVE, _gsc_main_files(rng, clips, noise_fraction))
        _write_gsc_tar(root / GSC_TEST_ARCHIVE, _gsc_test_files(test_rng, tests))
        return main
    main = _write_tree(root / GSC_MAIN_FOLDER, _gsc_main_files(rng, clips, noise_fraction))
    _write_tree(root / GSC_TEST_FOLDER, _gsc_test_files(test_rng, tests))
    return main


# -- Tiny ImageNet ---------------------------------------------------------------------------------------
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
    templates = _block_templates(rng, len(wnids), TIN_SIZE, 8)
    every = 97  # about 1 % greyscale images (the real set has a few)

    def image(label: int | None, index: int) -> bytes:
        noise = rng.integers(0, 256, size=(3, TIN_SIZE, TIN_SIZE), dtype=np.uint8)
        cls = label if label is not None else int(rng.integers(0, len(wnids)))
        return _jpeg(_mix(noise, templates[cls]), grey=index % every == every - 1)

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
    val_labels = _balanced_labels(rng, len(wnids) * val_per_class, len(wnids))
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
    """Write Tiny ImageNet (``tiny-imagenet-200`` layout, benchmarks.md §4.1) under ``root``.

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
        return _write_tree(root / TIN_FOLDER, files)
    target = root / TIN_ARCHIVE
    tmp = _claim(target)
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
    return _commit(tmp, target)


#: name -> writer, for scripts (``scripts/synth_data.py``)
WRITERS: dict[str, Callable[..., Path]] = {
    "cifar10": write_cifar10,
    "gsc": write_gsc,
    "tiny_imagenet": write_tiny_imagenet,
}

__all__ = [
    "GSC_WORDS",
    "WRITERS",
    "wav_bytes",
    "which_set",
    "write_cifar10",
    "write_gsc",
    "write_tiny_imagenet",
]
