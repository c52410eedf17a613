"""Fixed-point requantization (integer-only export): multiplier/shift pairs and floor semantics."""

from __future__ import annotations

import math

import pytest
import torch

from jpq.quant.fixed import MAX_SHIFT, fixed_point, requantize


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
    for bad in (-1.0, math.inf, math.nan, 2.0**31, 2.0**-40):
        with pytest.raises(ValueError):
            fixed_point(bad)


def test_requantize_floors_negative_values() -> None:
    v = torch.tensor([-3, -2, -1, 0, 1, 5])
    # * 0.5 then floor (not truncation towards zero): -1.5 -> -2, -0.5 -> -1
    assert requantize(v, torch.tensor(1 << 30), torch.tensor(31)).tolist() == [-2, -1, -1, 0, 0, 2]
    # the offset is added before the shift: floor((v * 0.5) + 0.25)
    off = torch.tensor(1 << 29)
    assert requantize(v, torch.tensor(1 << 30), torch.tensor(31), off).tolist() == [-2, -1, -1, 0, 0, 2]
    assert requantize(torch.tensor([1]), torch.tensor(1 << 30), torch.tensor(31), 3 * off).tolist() == [1]


def test_zero_multiplier_leaves_the_offset() -> None:
    """A channel whose weight scale is 0: m = 0 at the largest shift, the output is the offset alone."""
    m, s = fixed_point(0.0)
    assert (m, s) == (0, MAX_SHIFT)
    v = torch.tensor([-7, 0, 123456])
    got = requantize(v, torch.tensor(m), torch.tensor(s), torch.tensor(-5 << 20), torch.tensor(21))
    assert got.tolist() == [-3, -3, -3]  # floor(-5 / 2)


def test_requantize_int32_offset_at_a_coarser_resolution() -> None:
    """floor((floor(v m / 2^(s - t)) + B) / 2^t) == floor((v m + B 2^(s - t)) / 2^s) (exact integers)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randint(-(2**31), 2**31, (1000,), generator=g)
    mult = torch.randint(2**30, 2**31, (1000,), generator=g)
    off = torch.randint(-(2**30), 2**30, (1000,), generator=g)
    s, t = torch.tensor(40), torch.tensor(12)
    want = [((int(a) * int(m) + int(b) * 2**28) >> 40) for a, m, b in zip(v, mult, off, strict=True)]
    assert requantize(v, mult, s, off, t).tolist() == want
    assert requantize(v, mult, s, off).tolist() == [(int(a) * int(m) + int(b)) >> 40
                                                     for a, m, b in zip(v, mult, off, strict=True)]
