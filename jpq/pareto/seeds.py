"""Points that differ only in seed, averaged: mean ± std of accuracy and cost, and how many seeds.

A sweep ``jpq search -m seed=1,2,3 ...`` writes one run directory per job, named by its overrides
(``strength=2,seed=1``, ``strength=2,seed=2``, ...). Runs whose directories differ only in the ``seed=``
item are one design point: :func:`aggregate_seeds` reduces them to one row holding the mean of every
numeric column, the sample standard deviation of the asked ones (``<column>_std``, NaN for one seed),
``n_seeds`` and ``seeds`` (the seeds, as text). The fronts, figures and iso-accuracy reductions of the
report are then drawn on the means, so a difference can be told from seed noise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

#: the ``seed=N`` item of a Hydra sweep directory name (items are comma-separated, conf/config.yaml)
_SEED_ITEM = re.compile(r"(?:^|,)seed=[^,]*")


def point_key(run_dir: str) -> str:
    """The run directory with its ``seed=`` item removed: equal for the seeds of one design point."""
    p = Path(str(run_dir))
    name = _SEED_ITEM.sub("", p.name).lstrip(",")
    return str(p.parent / (name or "seed"))


def aggregate_seeds(df: pd.DataFrame, *, stats: Sequence[str]) -> pd.DataFrame:
    """One row per design point (see the module docstring); ``run_dir`` becomes the point's key.

    A frame where every point has one seed comes back unchanged but for ``n_seeds`` (1) and ``seeds``.
    """
    if df.empty or "run_dir" not in df.columns:
        return df.assign(n_seeds=pd.Series(dtype=int), seeds=pd.Series(dtype=object))
    keys = df["run_dir"].map(point_key)
    seeds_text = df["seed"].map(_seed_text) if "seed" in df.columns else pd.Series("", index=df.index)
    if not keys.duplicated().any():
        return df.assign(n_seeds=1, seeds=seeds_text)
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
               and not pd.api.types.is_bool_dtype(df[c]) and c != "seed"]
    rows = []
    for key, sub in df.groupby(keys, sort=False):
        row = sub.iloc[0].copy()
        means = sub[numeric].mean(numeric_only=True)
        for c in numeric:
            row[c] = means[c]
        n = len(sub)
        for c in stats:
            if c in sub.columns:
                row[f"{c}_std"] = float(sub[c].std(ddof=1)) if n > 1 else np.nan
        row["n_seeds"] = n
        row["seeds"] = ",".join(seeds_text.loc[sub.index])
        row["run_dir"] = key if n > 1 else row["run_dir"]
        rows.append(row)
    out = pd.DataFrame(rows).reset_index(drop=True)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out


def _seed_text(value: object) -> str:
    try:
        return str(int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return "?"
