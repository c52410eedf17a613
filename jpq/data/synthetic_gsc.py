"""Synthetic Google Speech Commands v0.02 (docs/benchmarks.md §3.1).

The main set has 35 word folders of ``<8-hex speaker>_nohash_<k>.wav``, ``_background_noise_/`` with the
six noise files, and ``validation_list.txt``/``testing_list.txt`` assigned by the TensorFlow
``which_set`` SHA-1 rule so that a speaker never straddles splits; the separate test set has its 12
label folders. WAVs are 16-bit PCM mono 16 kHz written with :mod:`wave`, some clips shorter than 1 s.
"""

from __future__ import annotations

import hashlib
import io
import wave
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from jpq.data.synthetic_common import SYNTHETIC_NOTE, claim, commit, write_tar, write_tree

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



def _write_gsc_tar(target: Path, files: Iterator[tuple[str, bytes]]) -> Path:
    """The official archives have no top folder: members are ``./<word>/<file>.wav`` (§3.1)."""
    tmp = claim(target)
    write_tar(tmp, ((f"./{rel}", data) for rel, data in files))
    return commit(tmp, target)


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
    """Write Speech Commands v0.02 (main set + separate test set) under ``root`` (docs/benchmarks.md §3.1).

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
    main = write_tree(root / GSC_MAIN_FOLDER, _gsc_main_files(rng, clips, noise_fraction))
    write_tree(root / GSC_TEST_FOLDER, _gsc_test_files(test_rng, tests))
    return main
