"""Fixed-point requantization (integer-only export): multiplier/shift pairs and floor semantics."""

from __future__ import annotations

import math

import pytest
import torch

from jpq.quant.fixed import common_fixed_point, fixed_point, requantize


@pytest.mark.parametrize(
    ("multiplier", "expected"),
    [
        (1.0, (1 << 30, 30)),
        (0.75, (3 << 29, 31)),  # 0.75 * 2^31
        (0.5, (1 << 30, 31)),
        (3.0, (3 << 29, 29)),
        (1.0 - 2.0**-33, (1 << 30, 30)),  # the fraction rounds up to 1: m halves, the shift drops by one
    ],
)
def test_fixed_point_golden(multiplier: float, expected: tuple[int, int]) -> None:
    assert fixed_point(multiplier) == expected


def test_fixed_point_precision_and_range() -> None:
    for mu in (1e-6, 3.3e-3, 0.123456789, 7.5, 1234.5):
        m, s = fixed_point(mu)
        assert 1 << 30 <= m < 1 << 31 and 0 <= s <= 62
        assert abs(m / 2.0**s - mu) <= mu * 2.0**-31
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**31, 2.0**-40):
        with pytest.raises(ValueError):
            fixed_point(bad)


def test_common_fixed_point_shares_the_shift() -> None:
    mults, shift = common_fixed_point([1.0, 0.25])
    assert (mults, shift) == ([1 << 30, 1 << 28], 30)


def test_requantize_floors_negative_values() -> None:
    v = torch.tensor([-3, -2, -1, 0, 1, 5])
    # * 0.5 then floor (not truncation towards zero): -1.5 -> -2, -0.5 -> -1
    assert requantize(v, torch.tensor(1 << 30), torch.tensor(31)).tolist() == [-2, -1, -1, 0, 0, 2]
    # the offset is added before the shift: floor((v * 0.5) + 0.25)
    off = torch.tensor(1 << 29)
    assert requantize(v, torch.tensor(1 << 30), torch.tensor(31), off).tolist() == [-2, -1, -1, 0, 0, 2]
    assert requantize(torch.tensor([1]), torch.tensor(1 << 30), torch.tensor(31), 3 * off).tolist() == [1]
