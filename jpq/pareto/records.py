"""Result records: one flat row per finished run, written atomically and gathered over a sweep.

A finished run (docs/architecture.md §4) leaves ``result.json`` (one flat JSON object) and
``result.csv`` (the same values as one CSV row) in its run directory. A sweep is any tree of such
directories; :func:`collect_results` turns it into one :class:`pandas.DataFrame`, the input of the
Pareto fronts (docs/method.md §9: the paper reports accuracy against size / BitOps / MPIC / NE16 cost).

The schema is defined once, here, as :data:`RESULT_COLUMNS`. Accuracies are in percent (0-100),
sizes carry their unit in the name (``size_bits``, ``size_kb`` = bits/8/1000, docs/method.md §5.2),
``w_bits``/``a_bits`` are the searched precision sets as strings such as ``"0,2,4,8"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jpq.cost import METRIC_NAMES
from jpq.errors import RunDirError
from jpq.io import atomic_write_json, atomic_write_text

#: the known result keys, in column order; extra keys follow them (docs/architecture.md §5)
RESULT_COLUMNS: tuple[str, ...] = (
    "dataset",
    "model",
    "method",
    "sampler",
    "cost",
    "strength",
    "seed",
    "w_bits",
    "a_bits",
    "warmup_val_acc",
    "warmup_test_acc",
    "search_val_acc",
    "final_val_acc",
    "final_test_acc",
    *METRIC_NAMES,  # size_bits, size_kb, bitops, mpic_cycles, mpic_energy_uj, ne16_cycles
    "wall_s_warmup",
    "wall_s_search",
    "wall_s_finetune",
    "wall_s_total",
    "run_dir",
)

#: known columns that hold text; every other known column is numeric
TEXT_COLUMNS: tuple[str, ...] = (
    "dataset", "model", "method", "sampler", "cost", "w_bits", "a_bits", "run_dir",
)

#: known numeric columns (accuracies in %, costs, wall-clock seconds, the regularizer strength, the seed)
NUMERIC_COLUMNS: tuple[str, ...] = tuple(c for c in RESULT_COLUMNS if c not in TEXT_COLUMNS)

#: the cost metrics a Pareto front can be drawn against (docs/method.md §5.2-§5.5), in report order
COST_METRICS: tuple[str, ...] = ("size_kb", "bitops", "mpic_cycles", "ne16_cycles")

#: the ``method`` value of the fixed-precision QAT baselines (drawn as markers, never as a front)
FIXED_METHOD = "fixed"

RESULT_JSON = "result.json"
RESULT_CSV = "result.csv"
ARCH_JSON = "arch.json"


class ResultReadWarning(UserWarning):
    """A ``result.json`` in a sweep could not be read (half-written, corrupt) and was skipped."""


def _bits_text(value: Any) -> Any:
    """Normalise a precision set to the schema's text: ``[0, 2, 4, 8]`` -> ``"0,2,4,8"``, ``8`` -> ``"8"``."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace(" ", "")
    if isinstance(value, (list, tuple)):
        return ",".join(str(int(v)) for v in value)
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and float(value).is_integer()):
        return str(int(value))
    return str(value)


def _plain(key: str, value: Any) -> Any:
    """Turn a record value into a JSON scalar (numpy/torch scalars unwrapped, non-finite floats -> null).

    Strict JSON has no NaN/Infinity, and ``result.json`` must stay readable by any tool; a missing
    measurement (e.g. no NE16 cost for a Conv1d net) is therefore written as ``null``.
    """
    if key in ("w_bits", "a_bits"):
        return _bits_text(value)
    if isinstance(value, np.generic):
        value = value.item()
    elif not isinstance(value, (str, bytes, Mapping, list, tuple)) and callable(getattr(value, "item", None)):
        value = value.item()  # 0-d torch tensor / numpy array
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise ValueError(
        f"result value {key!r} must be a scalar (result.json is flat), got {type(value).__name__}"
    )


def _ordered_keys(keys: Iterator[str] | list[str]) -> list[str]:
    """Known columns first in schema order, then extra keys in first-seen order."""
    extras: list[str] = []
    seen = set(RESULT_COLUMNS)
    for k in keys:
        if k not in seen:
            seen.add(k)
            extras.append(k)
    return [*RESULT_COLUMNS, *extras]


def write_result(run_dir: str | Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` as ``run_dir/result.json`` and ``run_dir/result.csv`` (one row), both atomically.

    Every key of :data:`RESULT_COLUMNS` must be present (a missing measurement is ``None``) so a sweep's
    rows always line up; ``run_dir`` alone is filled in from the argument when absent. Extra keys are
    kept after the known ones. The CSV is written first and the JSON last: :func:`collect_results` reads
    only ``result.json``, so its presence means the run is complete (docs/architecture.md §5).

    Raises:
        ValueError: known keys are missing (all named), or a value is not a scalar.
    """
    run_dir = Path(run_dir)
    rec = dict(record)
    rec.setdefault("run_dir", str(run_dir))
    missing = [c for c in RESULT_COLUMNS if c not in rec]
    if missing:
        raise ValueError(f"result record lacks the required key(s): {', '.join(missing)}")
    plain = {k: _plain(k, rec[k]) for k in _ordered_keys(list(rec))}

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(list(plain))
    writer.writerow(["" if v is None else v for v in plain.values()])
    atomic_write_text(run_dir / RESULT_CSV, buf.getvalue())
    atomic_write_json(run_dir / RESULT_JSON, plain)


def read_result(path: str | Path) -> dict[str, Any]:
    """Read one ``result.json`` (``path`` is the file or its run directory).

    Raises:
        RunDirError: the file is missing, is not valid JSON (e.g. half-written), or is not an object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULT_JSON
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RunDirError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunDirError(f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from err
    if not isinstance(obj, dict):
        raise RunDirError(f"{path} does not hold a JSON object")
    return obj


def _find_result_files(root: Path) -> list[Path]:
    """Every ``result.json`` under ``root`` at any depth, skipping hidden folders (e.g. ``.cache``)."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if RESULT_JSON in filenames:
            found.append(Path(dirpath) / RESULT_JSON)
    return sorted(found)


def collect_results(root: str | Path) -> pd.DataFrame:
    """Gather every ``result.json`` under ``root`` into one frame (one row per run).

    ``run_dir`` is set to the folder the file was found in (a copied or moved sweep stays consistent).
    Unreadable or half-written files are skipped with a :class:`ResultReadWarning` naming them, so one
    crashed job does not hide a whole sweep. Known numeric columns are numeric (``None`` -> NaN); an
    empty sweep gives an empty frame with the :data:`RESULT_COLUMNS`.
    """
    rows: list[dict[str, Any]] = []
    for path in _find_result_files(Path(root)):
        try:
            rec = read_result(path)
        except RunDirError as err:
            warnings.warn(f"skipping {path}: {err}", ResultReadWarning, stacklevel=2)
            continue
        rec["run_dir"] = str(path.parent)
        rows.append(rec)
    columns = _ordered_keys([k for r in rows for k in r])
    df = pd.DataFrame(rows, columns=columns)
    for col in NUMERIC_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    for col in ("w_bits", "a_bits"):
        df[col] = df[col].map(_bits_text).astype(object)
    return df


def is_fixed(df: pd.DataFrame) -> pd.Series:
    """Rows that are fixed-precision baselines (``method == "fixed"``); all False without a method column."""
    if "method" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["method"].astype(str).eq(FIXED_METHOD)


def _group_text(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def group_keys(df: pd.DataFrame, group_by: str) -> pd.Series:
    """The front group of every row: its ``group_by`` value as text, but ``"fixed"`` for every baseline.

    Fixed-precision baselines are single design points, never part of a searched front (the paper's
    Fig. 4-5 draw them as markers), whatever column the fronts are grouped by.
    """
    keys = df[group_by].map(_group_text)
    return keys.where(~is_fixed(df), FIXED_METHOD).astype(object)


def fixed_label(w_bits: Any, a_bits: Any) -> str:
    """The paper's name of a fixed-precision baseline: ``("8", "8")`` -> ``"w8a8"``; no a_bits -> ``"w8"``."""
    w = _bits_text(w_bits)
    a = _bits_text(a_bits)
    label = f"w{w}" if w else "fixed"
    return f"{label}a{a}" if a else label
