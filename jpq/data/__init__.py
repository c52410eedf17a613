"""Datasets: the embedded default (digits) and the paper's benchmarks, all as in-memory tensors."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from jpq.data.base import DataBundle, InputQuant, Split, batches, num_batches
from jpq.errors import ConfigError

#: dataset name -> (module, loader function); imported lazily so a missing optional piece
#: only matters when that dataset is used
LOADERS: dict[str, tuple[str, str]] = {
    "digits": ("jpq.data.digits", "load_digits"),
    "cifar10": ("jpq.data.cifar10", "load_cifar10"),
    "gsc": ("jpq.data.gsc", "load_gsc"),
    "tiny_imagenet": ("jpq.data.tiny_imagenet", "load_tiny_imagenet"),
}


#: the network-input quantizer of each dataset (docs/method.md §1.5), known without loading the data
INPUT_QUANT: dict[str, InputQuant] = {
    "digits": InputQuant(signed=False, hi=1.0),
    "cifar10": InputQuant(signed=False, hi=1.0),
    "gsc": InputQuant(signed=True, lo=-6.0, hi=6.0, bits=(8,)),
    "tiny_imagenet": InputQuant(signed=False, hi=1.0),
}


def load_dataset(name: str, data_dir: str | Path, **options: Any) -> DataBundle:
    """Load dataset ``name``; ``options`` are the loader's keyword options (download, seed, ...)."""
    if name not in LOADERS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(LOADERS)}")
    module, fn = LOADERS[name]
    loader = getattr(importlib.import_module(module), fn)
    if name == "digits":
        return loader()
    return loader(Path(data_dir), **options)


__all__ = [
    "INPUT_QUANT",
    "LOADERS",
    "DataBundle",
    "InputQuant",
    "Split",
    "batches",
    "load_dataset",
    "num_batches",
]
