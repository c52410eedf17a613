"""Pareto front, hypervolume and iso-accuracy reduction on hand-computed cases (docs/method.md §9)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from jpq.pareto.front import front_mask_by_group, hypervolume, iso_accuracy_reduction, pareto_mask


def _brute_force(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros(x.size, dtype=bool)
    for i in range(x.size):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        dom = (x <= x[i]) & (y >= y[i]) & ((x < x[i]) | (y > y[i]))
        out[i] = not dom.any()
    return out


def test_six_point_hand_case() -> None:
    # A(1,50) B(2,70) C(3,60: dominated by B) D(2,65: same cost, less accurate than B)
    # E(4,70: same accuracy as B, costlier) F(5,90)
    x = [1, 2, 3, 2, 4, 5]
    y = [50, 70, 60, 65, 70, 90]
    assert pareto_mask(x, y).tolist() == [True, True, False, False, False, True]


def test_duplicates_all_on_front_and_single_point() -> None:
    assert pareto_mask([1, 1, 2], [50, 50, 40]).tolist() == [True, True, False]
    assert pareto_mask([3.0], [10.0]).tolist() == [True]
    assert pareto_mask([], []).tolist() == []
    # a duplicate of a dominated point stays dominated
    assert pareto_mask([1, 2, 2], [60, 50, 50]).tolist() == [True, False, False]


def test_nan_never_on_front_and_never_dominates() -> None:
    x = [math.nan, 1.0, 2.0, math.inf]
    y = [99.0, math.nan, 50.0, 99.0]
    assert pareto_mask(x, y).tolist() == [False, False, True, False]


def test_matches_brute_force_with_many_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 40))
        x = rng.integers(0, 6, n).astype(float)
        y = rng.integers(0, 6, n).astype(float)
        x[rng.random(n) < 0.1] = np.nan
        assert pareto_mask(x, y).tolist() == _brute_force(x, y).tolist()


def test_hypervolume_hand_computed() -> None:
    x, y = [1, 2, 4], [50, 70, 90]
    # (2-1)*50 + (4-2)*70 + (5-4)*90
    assert hypervolume(x, y, ref_x=5, ref_y=0) == pytest.approx(280.0)
    # dominated, duplicate, beyond-the-reference and below-the-reference points change nothing
    assert hypervolume([*x, 3, 2, 6, 0.5], [*y, 60, 70, 95, -1], ref_x=5, ref_y=0) == pytest.approx(280.0)
    # a raised accuracy reference: 1*(50-40) + 2*(70-40) + 1*(90-40)
    assert hypervolume(x, y, ref_x=5, ref_y=40) == pytest.approx(120.0)
    assert hypervolume([1.0], [80.0], ref_x=1.0, ref_y=0.0) == 0.0
    assert hypervolume([], [], ref_x=1.0, ref_y=0.0) == 0.0
    assert hypervolume([0.25], [80.0], ref_x=1.0, ref_y=0.0) == pytest.approx(60.0)


def test_iso_accuracy_reduction_paper_figure() -> None:
    # CIFAR-10 "Proposed" points and the w2a8 baseline read from the paper figure (docs/method.md §9):
    # the cheapest point reaching 71.8 % is 5.9 kB -> 69.59 %, the abstract reports 69.54 % vs w2.
    x = [2.9, 5.9, 15.3, 26.5, 59.0]
    y = [62.0, 72.8, 81.9, 84.4, 86.2]
    red = iso_accuracy_reduction(x, y, base_x=19.4, base_y=71.8)
    assert red == pytest.approx(100 * (1 - 5.9 / 19.4))
    assert red == pytest.approx(69.54, abs=0.1)
    # w8a8 (77.3 kB, 86.3 %) is never reached by these points
    assert iso_accuracy_reduction(x, y, base_x=77.3, base_y=86.3) is None
    # w4a8 (38.7 kB, 85.4 %): only the 59 kB point reaches it, which is bigger -> negative reduction
    assert iso_accuracy_reduction(x, y, base_x=38.7, base_y=85.4) == pytest.approx(-52.4548, abs=1e-3)
    # reaching exactly the baseline accuracy counts
    assert iso_accuracy_reduction([10.0], [80.0], base_x=40.0, base_y=80.0) == pytest.approx(75.0)
    with pytest.raises(ValueError):
        iso_accuracy_reduction(x, y, base_x=0.0, base_y=50.0)


def test_front_mask_by_group_keeps_baselines_apart() -> None:
    df = pd.DataFrame({
        "method": ["joint", "joint", "mixprec", "mixprec", "fixed", "fixed"],
        "size_kb": [5.0, 10.0, 4.0, 8.0, 1.0, 2.0],
        "final_test_acc": [70.0, 60.0, 50.0, 65.0, 90.0, 98.0],
    })
    mask = front_mask_by_group(df, x="size_kb", y="final_test_acc", group_by="method")
    assert mask.tolist() == [True, False, True, True, True, True]
    # grouped by another column, the fixed baselines still do not dominate searched points
    df["cost"] = ["size", "size", "size", "size", "size", "size"]
    mask = front_mask_by_group(df, x="size_kb", y="final_test_acc", group_by="cost")
    assert mask.tolist() == [True, False, True, False, True, True]
