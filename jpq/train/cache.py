"""The warmup cache: the float warmup is trained once and reused by every job with the same
dataset, model, warmup settings and seed (docs/architecture.md §4; the scripts' final_best_warmup.ckp).

The key is a hash of those settings; a changed setting gives a new key and a new training. Parallel
sweep jobs take a file lock: the first trains and publishes atomically, the others wait and reuse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from jpq.errors import RunDirError
from jpq.io import atomic_torch_save, load_tensors


def cache_key(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached(path: Path, build: Callable[[], dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    """Load ``path`` or build, save and return it; returns (payload, hit)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        if path.exists():
            try:
                return load_tensors(path), True
            except ValueError as e:
                raise RunDirError(f"warmup cache {path} is unreadable: {e}; delete it to retrain") from e
        payload = build()
        atomic_torch_save(path, payload)
        return payload, False
