"""Random stand-ins for the paper's datasets, written in the exact official file formats.

Tests and timing runs cannot download CIFAR-10, Speech Commands or Tiny ImageNet, so these writers
produce the distributed layouts byte-format for byte-format, filled with random content, and the real
loaders read them (docs/benchmarks.md §8):

* :func:`write_cifar10` (:mod:`jpq.data.synthetic_cifar10`) - ``cifar-10-batches-py/`` or
  ``cifar-10-python.tar.gz`` with Python-2 style pickled batches (§2.1);
* :func:`write_gsc` (:mod:`jpq.data.synthetic_gsc`) - the Speech Commands v0.02 main set with its
  validation/testing lists (speaker-hash rule :func:`which_set`) and background noise, and the separate
  12-label test set (§3.1);
* :func:`write_tiny_imagenet` (:mod:`jpq.data.synthetic_tiny_imagenet`) - ``tiny-imagenet-200/`` or
  ``tiny-imagenet-200.zip`` with 64x64 JPEGs (§4.1).

The content is noise plus a weak class-dependent pattern (a coloured block template per image class, a
pure tone per spoken word), so a network can learn a little and runs are not pure chance; accuracy on it
means nothing. Every writer refuses to overwrite an existing dataset (it might be the user's real one),
builds into a temporary name and renames at the end (an interrupted run never leaves a half dataset
that a loader would accept), and marks its output as synthetic in a readme file the loaders ignore
(:mod:`jpq.data.synthetic_common`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jpq.data.synthetic_cifar10 import (
    CIFAR_ARCHIVE,
    CIFAR_FOLDER,
    CIFAR_LABEL_NAMES,
    CIFAR_PER_BATCH,
    write_cifar10,
)
from jpq.data.synthetic_common import SYNTHETIC_NOTE
from jpq.data.synthetic_gsc import (
    CLIP_SAMPLES,
    GSC_COMMANDS,
    GSC_MAIN_ARCHIVE,
    GSC_MAIN_FOLDER,
    GSC_NOISE_DIR,
    GSC_NOISE_WINDOWS,
    GSC_TEST_ARCHIVE,
    GSC_TEST_CLIPS,
    GSC_TEST_FOLDER,
    GSC_TEST_LABELS,
    GSC_TOTAL_CLIPS,
    GSC_WORDS,
    SAMPLE_RATE,
    SILENCE_HOP,
    wav_bytes,
    which_set,
    write_gsc,
)
from jpq.data.synthetic_tiny_imagenet import TIN_ARCHIVE, TIN_FOLDER, TIN_SIZE, write_tiny_imagenet

#: name -> writer, for scripts (``scripts/synth_data.py``)
WRITERS: dict[str, Callable[..., Path]] = {
    "cifar10": write_cifar10,
    "gsc": write_gsc,
    "tiny_imagenet": write_tiny_imagenet,
}

__all__ = [
    "CIFAR_ARCHIVE",
    "CIFAR_FOLDER",
    "CIFAR_LABEL_NAMES",
    "CIFAR_PER_BATCH",
    "CLIP_SAMPLES",
    "GSC_COMMANDS",
    "GSC_MAIN_ARCHIVE",
    "GSC_MAIN_FOLDER",
    "GSC_NOISE_DIR",
    "GSC_NOISE_WINDOWS",
    "GSC_TEST_ARCHIVE",
    "GSC_TEST_CLIPS",
    "GSC_TEST_FOLDER",
    "GSC_TEST_LABELS",
    "GSC_TOTAL_CLIPS",
    "GSC_WORDS",
    "SAMPLE_RATE",
    "SILENCE_HOP",
    "SYNTHETIC_NOTE",
    "TIN_ARCHIVE",
    "TIN_FOLDER",
    "TIN_SIZE",
    "WRITERS",
    "wav_bytes",
    "which_set",
    "write_cifar10",
    "write_gsc",
    "write_tiny_imagenet",
]
