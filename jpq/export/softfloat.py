"""IEEE-754 binary32 addition and multiplication of non-negative floats, in integer arithmetic
(docs/method.md §8.1, residual adds).

The fake-quant network adds two PACT outputs as float32 values and re-quantizes the sum with a floor.
The real sum of two codes often lies exactly on a level of the output quantizer, and then the float32
rounding decides on which side the floor falls. To compute the trained network's add exactly, the integer
program repeats the float32 operations on the bit patterns (as ``int64``): a float ``f > 0`` is
``m * 2^e`` with a 24-bit significand ``m``, results are rounded to the nearest, ties to even. The C kernel
``jpq_add`` does the same with the same steps. Only non-negative, finite, non-subnormal results occur
(codes divided by PACT scales); :func:`f32_bits` checks the operands.
"""

from __future__ import annotations

import torch
from torch import Tensor

_FRAC = (1 << 23) - 1
_HIDDEN = 1 << 23
#: exponent bias of a 24-bit integer significand: f = m * 2^(E - 150) for the exponent field E
_BIAS = 150
#: an operand this many binary orders below the other cannot change the rounded sum (< 2^-8 ulp)
_FAR = 32


def f32_bits(x: Tensor) -> Tensor:
    """The binary32 bit patterns (``int64``) of non-negative, normal (or zero) float32 values."""
    x = x.detach().to(torch.float32).contiguous()
    if bool((x < 0).any()) or not bool(torch.isfinite(x).all()):
        raise ValueError("soft float32: operands must be finite and non-negative")
    bits = x.view(torch.int32).to(torch.int64)
    if bool(((bits > 0) & (bits < _HIDDEN)).any()):
        raise ValueError("soft float32: subnormal operand")
    return bits


def _split(bits: Tensor) -> tuple[Tensor, Tensor]:
    """``(m, e)`` with ``f = m * 2^e``, ``m`` in ``[2^23, 2^24)`` (``m = 0`` for zero)."""
    m = torch.where(bits == 0, 0, (bits & _FRAC) | _HIDDEN)
    return m, (bits >> 23) - _BIAS


def _pack(v: Tensor, e: Tensor, n: Tensor) -> Tensor:
    """The bit pattern of the exact value ``v * 2^e`` (``v > 0`` of bit length ``n >= 24``), rounded to 24
    significant bits, nearest, ties to even."""
    s = n - 24
    keep = v >> s
    rem = v - (keep << s)
    half = torch.where(s > 0, torch.ones_like(s) << (s - 1).clamp(min=0), 1)
    up = (s > 0) & ((rem > half) | ((rem == half) & ((keep & 1) == 1)))
    # a carry out of 24 bits moves into the exponent field, which is the correct result
    return ((e + s + _BIAS) << 23) + (keep - _HIDDEN) + up.to(torch.int64)


def f32_add(a: Tensor, b: Tensor) -> Tensor:
    """``fl(a + b)`` on bit patterns of non-negative floats (broadcast)."""
    a, b = torch.broadcast_tensors(a, b)
    hi, lo = torch.maximum(a, b), torch.minimum(a, b)  # for non-negative floats the bits order the values
    mh, eh = _split(hi)
    ml, el = _split(lo)
    d = (eh - el).clamp(max=_FAR)
    v = (mh << d) + ml  # the exact sum at the smaller exponent
    n = 24 + d + ((v >> (24 + d)) != 0).to(torch.int64)
    out = _pack(v, eh - d, n)
    return torch.where((ml == 0) | (eh - el > _FAR), hi, out)


def f32_mul(a: Tensor, b: Tensor) -> Tensor:
    """``fl(a * b)`` on bit patterns of non-negative floats (broadcast)."""
    ma, ea = _split(a)
    mb, eb = _split(b)
    p = ma * mb  # exact, below 2^48
    n = 47 + ((p >> 47) != 0).to(torch.int64)
    out = _pack(p.clamp(min=1), ea + eb, n)
    return torch.where((ma == 0) | (mb == 0), 0, out)


def f32_floor(bits: Tensor) -> Tensor:
    """``floor(f)`` (``int64``) of non-negative floats below 2^62."""
    m, e = _split(bits)
    return torch.where(e >= 0, m << e.clamp(min=0), m >> (-e).clamp(min=0, max=63))
