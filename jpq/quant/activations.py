"""PACT activation fake-quantization (algorithm.md §2.2) and its precision mixture (§4).

Unsigned PACT, per precision ``a`` with a trainable clip::

    S = (2^a - 1) / (clip + 1e-3);   y = floor(S * clamp(x, 0, clip)) / S        (FLOOR, not round)
    dy/dx = 1 if 0 < x < clip else 0;   dy/dclip = sum of upstream grad where x >= clip

Signed PACT (network input of KWS/ImageNet) has two clips ``lo < hi``::

    S = (2^a - 1) / (hi - lo + 1e-3);  y = floor(S * clamp(x, lo, hi)) / S     (no zero point)

The search mixes precisions: ``out = sum_j theta_j * PACT_{a_j}(x)``. One fused autograd function
computes the mixture and saves only ``x`` (the masks are recomputed in the backward pass).
"""

from __future__ import annotations

import torch
from torch import Tensor

PACT_EPS = 1e-3


def _pact_levels(bits: Tensor, dtype: torch.dtype) -> Tensor:
    return 2.0 ** bits.to(dtype) - 1.0


class _MixedPact(torch.autograd.Function):
    """Mixture of signed/unsigned PACT quantizers; ``lo``/``hi`` are (P,) clips, ``theta`` (P,)."""

    @staticmethod
    def forward(
        ctx,
        x: Tensor,
        lo: Tensor,
        hi: Tensor,
        theta: Tensor,
        bits: Tensor,  # type: ignore[override]
        signed: bool,
    ) -> Tensor:
        levels = _pact_levels(bits, x.dtype)
        span = (hi - lo) if signed else hi
        scale = levels / (span + PACT_EPS)  # (P,)
        out = None
        for j in range(bits.shape[0]):  # |P_A| <= 3 iterations, element-wise work each
            xc = torch.clamp(x, lo[j], hi[j]) if signed else torch.clamp(x, min=0.0).clamp_(max=hi[j])
            yj = torch.floor(xc * scale[j]) / scale[j]
            out = yj * theta[j] if out is None else out.add_(yj * theta[j])
        ctx.save_for_backward(x, lo, hi, theta, bits)
        ctx.signed = signed
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lo, hi, theta, bits = ctx.saved_tensors
        signed = ctx.signed
        p = bits.shape[0]
        need_x, need_lo, need_hi, need_theta = ctx.needs_input_grad[:4]
        grad_x = torch.zeros_like(x) if need_x else None
        grad_lo = torch.zeros_like(lo) if (need_lo and signed) else None
        grad_hi = torch.zeros_like(hi) if need_hi else None
        grad_theta = torch.zeros_like(theta) if need_theta else None
        levels = _pact_levels(bits, x.dtype)
        span = (hi - lo) if signed else hi
        scale = levels / (span + PACT_EPS)
        lower = lo if signed else torch.zeros_like(hi)
        for j in range(p):
            above = x >= hi[j]
            if need_x:
                inside = (x > lower[j]) & ~above
                grad_x.add_(grad * inside * theta[j])
            if need_hi:
                grad_hi[j] = (grad * above).sum() * theta[j]
            if grad_lo is not None:
                grad_lo[j] = (grad * (x <= lo[j])).sum() * theta[j]
            if need_theta:
                xc = torch.clamp(x, lo[j], hi[j]) if signed else torch.clamp(x, min=0.0).clamp_(max=hi[j])
                grad_theta[j] = (grad * (torch.floor(xc * scale[j]) / scale[j])).sum()
        return grad_x, grad_lo, grad_hi, grad_theta, None, None


def mixed_pact(x: Tensor, hi: Tensor, theta: Tensor, bits: Tensor, lo: Tensor | None = None) -> Tensor:
    """``sum_j theta_j * PACT_{bits_j}(x)``; unsigned when ``lo`` is None, signed otherwise."""
    signed = lo is not None
    lo_t = lo if signed else torch.zeros_like(hi)
    return _MixedPact.apply(x, lo_t, hi, theta, bits, signed)


def pact(x: Tensor, clip: float | Tensor, bits: int) -> Tensor:
    """Single-precision unsigned PACT (reference for tests and export)."""
    c = torch.as_tensor(clip, dtype=x.dtype, device=x.device)
    s = (2.0**bits - 1.0) / (c + PACT_EPS)
    return torch.floor(torch.clamp(x, min=0.0).clamp(max=float(c)) * s) / s


def act_scale(hi: Tensor, bits: Tensor, lo: Tensor | None = None) -> Tensor:
    """Scale used for bias quantization, ``clip / (2^a - 1)`` (§2.2; no +1e-3, §11 item 10)."""
    span = hi if lo is None else hi - lo
    return span / _pact_levels(bits, hi.dtype)
