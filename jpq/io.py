"""Atomic file writes: a temp file in the same folder, then ``os.replace`` (docs/architecture.md §5).

Parallel sweep jobs and interrupted runs therefore never leave a half-written result or checkpoint.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


def _atomic(path: Path, write: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    _atomic(Path(path), lambda f: torch.save(obj, f))


def cpu_state(m: torch.nn.Module) -> dict[str, Any]:
    """``m.state_dict()`` with every tensor on the CPU (what jpq saves: tensors and plain data only)."""
    return {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v for k, v in m.state_dict().items()}


def load_tensors(path: str | Path, map_location: str = "cpu") -> Any:
    """``torch.load`` that only reads tensors and plain data (``weights_only=True``): a file holding other
    Python objects is refused, since unpickling it could run code. Raises ``ValueError`` with a one-line
    reason for any file that cannot be read this way (``FileNotFoundError`` for a missing one)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as e:
        why = "it holds Python objects, not only tensors (refused: loading it could run code)"
        raise ValueError(why) from e
    except Exception as e:  # noqa: BLE001 - torch's errors for truncated or foreign files
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise ValueError(f"corrupt or not a torch file ({(lines or [type(e).__name__])[0][:200]})") from e
