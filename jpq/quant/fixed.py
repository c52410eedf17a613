"""Fixed-point requantization for integer-only inference (docs/method.md §8, deployment).

A real multiplier ``M > 0`` is stored as an integer ``m`` in ``[2^30, 2^31)`` and a right shift ``s``::

    M ~= m / 2^s,        requantize(v) = floor(v * m / 2^s)        (an arithmetic right shift)

``v * m`` is evaluated in 64-bit integers, so ``|v| < 2^31`` keeps it exact. The relative error of the
multiplier is below ``2^-31``. A multiplier of 0 (a channel whose weight scale is 0) is ``m = 0`` with the
largest shift: its output is its offset alone, at the finest resolution.

An int32 offset ``B`` at a coarser resolution ``2^-t`` (``t <= s``) is added between two floor shifts,
``floor((floor(v * m / 2^(s - t)) + B) / 2^t) = floor((v * m + B * 2^(s - t)) / 2^s)`` (nested floors by
powers of two), so ``B * 2^(s - t)`` is never formed and no 64-bit intermediate can overflow.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: the multiplier's significant bits: m in [2^(MULT_BITS-1), 2^MULT_BITS)
MULT_BITS = 31
#: the largest right shift the kernels accept (v * m < 2^62)
MAX_SHIFT = 62


def fixed_point(multiplier: float) -> tuple[int, int]:
    """``(m, s)`` with ``m / 2^s`` the nearest such value to ``multiplier`` and ``m`` in ``[2^30, 2^31)``.

    ``0`` gives ``(0, MAX_SHIFT)`` (module docstring). Raises ``ValueError`` when the multiplier is negative
    or not finite or needs a shift outside ``[0, MAX_SHIFT]`` (``2^31`` or more, or below ``2^-32``).
    """
    if multiplier == 0:
        return 0, MAX_SHIFT
    if not (math.isfinite(multiplier) and multiplier > 0):
        raise ValueError(f"requantization multiplier {multiplier!r} is not positive and finite")
    frac, exp = math.frexp(multiplier)  # multiplier = frac * 2^exp, frac in [0.5, 1)
    m = round(frac * (1 << MULT_BITS))
    shift = MULT_BITS - exp
    if m == 1 << MULT_BITS:  # frac rounded up to 1
        m, shift = m >> 1, shift - 1
    if not 0 <= shift <= MAX_SHIFT:
        raise ValueError(
            f"requantization multiplier {multiplier:.6g} needs a shift of {shift} (0..{MAX_SHIFT})"
        )
    return m, shift


def requantize(v: Tensor, mult: Tensor, shift: Tensor, offset: Tensor | None = None,
               offset_shift: Tensor | None = None) -> Tensor:
    """``floor((v * mult + offset * 2^(shift - offset_shift)) / 2^shift)`` in int64, as two floor shifts
    (module docstring; ``offset_shift`` defaults to ``shift``); all arguments broadcast together."""
    p = v.to(torch.int64) * mult.to(torch.int64)
    shift = shift.to(torch.int64)
    if offset is None:
        return torch.bitwise_right_shift(p, shift)
    t = shift if offset_shift is None else offset_shift.to(torch.int64)
    p = torch.bitwise_right_shift(p, shift - t) + offset.to(torch.int64)
    return torch.bitwise_right_shift(p, t)
