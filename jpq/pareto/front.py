"""Pareto fronts of (cost, accuracy) points and the paper's summary numbers (docs/method.md §9).

The paper compares methods by their accuracy-versus-cost Pareto fronts (Fig. 4-5: size, MPIC and NE16
cycles) and summarises them as "size reduction at iso-accuracy" against fixed-precision baselines
(abstract: -47.50 % vs w8, -69.54 % vs w2). Cost is minimised, accuracy maximised throughout.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from jpq.pareto.records import group_keys


def _as_xy(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    xa = np.asarray(x, dtype=float).reshape(-1)
    ya = np.asarray(y, dtype=float).reshape(-1)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    return xa, ya


def pareto_mask(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """Which points lie on the front that minimises cost ``x`` and maximises accuracy ``y``.

    A point is on the front iff no other point has ``x' <= x`` and ``y' >= y`` with at least one strict
    inequality. Exact duplicates do not dominate each other, so all copies are on the front; a single
    point is on its own front; points with a non-finite coordinate (NaN: a run that did not measure this
    cost) are never on it and never dominate anything.

    Sort by x ascending (ties: y descending) and sweep once: a point is on the front iff it has the
    best y among its x-ties and beats the best y seen at strictly smaller x. O(n log n).
    """
    xa, ya = _as_xy(x, y)
    mask = np.zeros(xa.size, dtype=bool)
    valid = np.flatnonzero(np.isfinite(xa) & np.isfinite(ya))
    if valid.size == 0:
        return mask
    order = valid[np.lexsort((-ya[valid], xa[valid]))]
    best_y_before = -np.inf  # best accuracy among points with strictly smaller cost
    i = 0
    while i < order.size:
        j = i
        x_i = xa[order[i]]
        while j < order.size and xa[order[j]] == x_i:
            j += 1
        tie = order[i:j]  # same cost, accuracy descending
        top_y = ya[tie[0]]
        if top_y > best_y_before:
            mask[tie[ya[tie] == top_y]] = True
            best_y_before = top_y
        i = j
    return mask


def hypervolume(x: ArrayLike, y: ArrayLike, *, ref_x: float, ref_y: float) -> float:
    """Area dominated by the front and bounded by the reference point ``(ref_x, ref_y)``.

    The reference is the worst corner (highest cost, lowest accuracy). The area is the union of the
    rectangles ``[x_i, ref_x] x [ref_y, y_i]``; points with a cost above ``ref_x`` or an accuracy below
    ``ref_y`` are ignored, as are non-finite points. Larger is better; an empty front gives 0.
    """
    xa, ya = _as_xy(x, y)
    keep = np.isfinite(xa) & np.isfinite(ya) & (xa <= ref_x) & (ya >= ref_y)
    xa, ya = xa[keep], ya[keep]
    if xa.size == 0:
        return 0.0
    on = pareto_mask(xa, ya)
    fx, fy = xa[on], ya[on]
    order = np.lexsort((fy, fx))
    fx, fy = fx[order], fy[order]  # along the front, accuracy rises with cost
    widths = np.append(fx[1:], ref_x) - fx
    return float(np.sum(widths * (fy - ref_y)))


def iso_accuracy_reduction(x: ArrayLike, y: ArrayLike, *, base_x: float, base_y: float) -> float | None:
    """Cost reduction in percent at iso-accuracy against a baseline point ``(base_x, base_y)``.

    ``100 * (1 - x_min / base_x)`` where ``x_min`` is the smallest cost among points whose accuracy is at
    least ``base_y``: how the paper reports "size reduction at iso-accuracy" (docs/method.md §9). Negative
    when even the cheapest such point costs more than the baseline; ``None`` if no point reaches the
    baseline accuracy.
    """
    if not np.isfinite(base_x) or base_x <= 0:
        raise ValueError(f"baseline cost must be a positive number, got {base_x}")
    xa, ya = _as_xy(x, y)
    ok = np.isfinite(xa) & np.isfinite(ya) & (ya >= base_y)
    if not ok.any():
        return None
    return float(100.0 * (1.0 - xa[ok].min() / base_x))


def front_mask_by_group(df: pd.DataFrame, *, x: str, y: str, group_by: str) -> pd.Series:
    """``on_front`` for every row: the Pareto front computed within each group (see ``group_keys``).

    Fixed-precision baselines form their own group, so a baseline never removes a searched point from
    its method's front (the paper draws baselines as separate markers).
    """
    out = pd.Series(False, index=df.index, dtype=bool)
    keys = group_keys(df, group_by)
    for _, idx in keys.groupby(keys, sort=True).groups.items():
        sub = df.loc[idx]
        out.loc[idx] = pareto_mask(sub[x].to_numpy(dtype=float), sub[y].to_numpy(dtype=float))
    return out
