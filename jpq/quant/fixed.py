"""Fixed-point requantization for integer-only inference (docs/method.md §8, deployment).

A real multiplier ``M > 0`` is stored as an integer ``m`` in ``[2^30, 2^31)`` and a right shift ``s``::

    M ~= m / 2^s,        requantize(v) = floor(v * m / 2^s)        (an arithmetic right shift)

``v * m`` is evaluated in 64-bit integers, so ``|v| < 2^31`` keeps it exact. The relative error of the
multiplier is below ``2^-31``.
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

    Raises ``ValueError`` when the multiplier is not positive and finite or needs a shift outside
    ``[0, MAX_SHIFT]`` (a multiplier of ``2^31`` or more, or below ``2^-32``).
    """
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


def common_fixed_point(multipliers: list[float]) -> tuple[list[int], int]:
    """Integers ``m_i`` sharing one shift ``s`` with ``m_i / 2^s ~= multipliers[i]`` (largest in
    ``[2^30, 2^31)``): the rescaling of several inputs to one scale, e.g. the operands of an add."""
    _, shift = fixed_point(max(multipliers))
    return [round(mu * 2.0**shift) for mu in multipliers], shift


def requantize(v: Tensor, mult: Tensor, shift: Tensor, offset: Tensor | None = None) -> Tensor:
    """``floor((v * mult + offset) / 2^shift)`` in int64 (all arguments broadcast together)."""
    p = v.to(torch.int64) * mult.to(torch.int64)
    if offset is not None:
        p = p + offset.to(torch.int64)
    return torch.bitwise_right_shift(p, shift.to(torch.int64))
