"""PACT activation fake-quantization (docs/method.md §2.2) and its precision mixture (§4).

Unsigned PACT, per precision ``a`` with a trainable clip::

    S = (2^a - 1) / (clip + 1e-3);   y = floor(S * clamp(x, 0, clip)) / S        (FLOOR, not round)
    dy/dx = 1 if 0 < x < clip else 0;   dy/dclip = sum of upstream grad where x >= clip

Signed PACT (network input of KWS/ImageNet) has two clips ``lo < hi``::

    S = (2^a - 1) / (hi - lo + 1e-3);  y = floor(S * clamp(x, lo, hi)) / S     (no zero point)
    dy/dlo = sum of upstream grad where x <= lo

The search mixes precisions: ``out = sum_j theta_j * PACT_{a_j}(x)``, with
``dL/dtheta_j = <dL/dout, PACT_j(x)>``. These run on every activation tensor at every step, so they are
custom autograd functions that make as few passes over the tensor as possible: the single-precision
case (fixed activations, the paper's setting) saves only ``x``; the mixture also keeps each integer level
tensor ``floor(S_j * clamp(x))`` for the theta gradient instead of recomputing it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

PACT_EPS = 1e-3


def pact_levels(bits: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``2^a - 1`` for each activation precision."""
    return 2.0 ** bits.to(dtype) - 1.0


def _quantize(x: Tensor, lo: Tensor | None, hi: Tensor, scale: Tensor, *, divide: bool = True) -> Tensor:
    """``floor(S * clamp(x, lo or 0, hi)) / S``; the integer levels without ``/ S`` if not ``divide``."""
    if x.device.type == "cpu":
        # scalar bounds take the vectorised clamp kernel (a tensor-bound clamp broadcasts, ~5x slower);
        # the float32 values are exact as Python floats, so the result is bit-identical
        s = float(scale)
        y = torch.clamp(x, 0.0 if lo is None else float(lo), float(hi)).mul_(s).floor_()
        return y.div_(s) if divide else y
    # accelerators: tensor bounds, no host sync
    y = torch.clamp(x, min=torch.zeros_like(hi) if lo is None else lo, max=hi).mul_(scale).floor_()
    return y.div_(scale) if divide else y


def _quantize_cpu(x: Tensor, lo: float, hi: float, scale: float, divide: bool = True) -> Tensor:
    """:func:`_quantize` with the bounds and scale as Python floats (exact float32 values)."""
    y = torch.clamp(x, lo, hi).mul_(scale).floor_()
    return y.div_(scale) if divide else y


#: the dtypes whose arithmetic the host reproduces exactly (IEEE single and double)
_HOST = {torch.float32: np.float32, torch.float64: np.float64}


def _host_scale(level: float, lo: float, hi: float, f: type) -> float:
    """``level / (hi - lo + PACT_EPS)`` in the tensors' arithmetic ``f``, as the tensor ops compute it."""
    span = f(hi) if lo == 0.0 else f(hi) - f(lo)
    return float(f(level) / (span + f(PACT_EPS)))


def _below(hi: float, f: type) -> float:
    """The float of type ``f`` just below ``hi``: ``x >= hi`` is ``x > _below(hi, f)``."""
    return float(np.nextafter(f(hi), f(-np.inf)))


def _masks(x: Tensor, lo: Tensor | None, hi: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
    above = x >= hi
    below = x <= (0.0 if lo is None else lo)
    inside = ~(above | below)
    return inside, above, below if lo is not None else None


class _Pact(torch.autograd.Function):
    """One precision, ``theta = 1``: the fixed-activation case."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, level: Tensor) -> Tensor:  # type: ignore[override]
        f = _HOST.get(torch.promote_types(level.dtype, hi.dtype))
        ctx.signed, ctx.clip_shape = lo is not None, hi.shape
        ctx.cpu = x.device.type == "cpu" and f is not None
        if ctx.cpu:  # bounds and scale as floats: a handful of tensor ops in all
            ctx.save_for_backward(x)
            lo_f, hi_f = 0.0 if lo is None else float(lo), float(hi)
            ctx.bounds = (lo_f, hi_f, _HOST[hi.dtype] if hi.dtype in _HOST else f)
            return _quantize_cpu(x, lo_f, hi_f, _host_scale(float(level), lo_f, hi_f, f))
        scale = pact_scale(level, hi.detach(), None if lo is None else lo.detach())
        ctx.save_for_backward(x, hi, lo if lo is not None else hi)
        return _quantize(x, lo, hi, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        if ctx.cpu:
            return _pact_backward_cpu(ctx, grad)
        # accelerators: element-wise passes are cheap there; avoid host syncs
        need_x, need_lo, need_hi = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        x, hi, lo = ctx.saved_tensors
        inside, above, below = _masks(x, lo if ctx.signed else None, hi)
        grad_x = torch.where(inside, grad, 0.0) if need_x else None
        grad_hi = torch.where(above, grad, 0.0).sum().reshape(hi.shape) if need_hi else None
        grad_lo = torch.where(below, grad, 0.0).sum().reshape(hi.shape) if ctx.signed and need_lo else None
        return grad_x, grad_lo, grad_hi, None


def _pact_backward_cpu(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:  # type: ignore[no-untyped-def]
    """CPU backward of :class:`_Pact`: two fused kernels instead of compare/combine/select passes.

    hardtanh_backward: grad where lower < x < hi; threshold_backward: grad where x > lower.
    """
    (x,) = ctx.saved_tensors
    lower, hi, f = ctx.bounds
    need_x, need_lo, need_hi = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    inside = torch.ops.aten.hardtanh_backward(grad, x, lower, hi)
    grad_hi = grad_lo = None
    if not ctx.signed:
        if need_hi:  # x >= hi  <=>  x > the float just below hi: one pass
            grad_hi = torch.ops.aten.threshold_backward(grad, x, _below(hi, f)).sum().reshape(ctx.clip_shape)
    elif need_hi or need_lo:
        over_lower = torch.ops.aten.threshold_backward(grad, x, lower).sum()  # x > lower
        s_inside = inside.sum()
        if need_hi:  # x >= hi  <=>  x > lower and not inside
            grad_hi = (over_lower - s_inside).reshape(ctx.clip_shape)
        if need_lo:  # x <= lower
            grad_lo = (grad.sum() - over_lower).reshape(ctx.clip_shape)
    return inside if need_x else None, grad_lo, grad_hi, None


class _MixedPact(torch.autograd.Function):
    """Mixture over ``P > 1`` precisions; ``lo``/``hi``/``levels``/``theta`` are (P,)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, theta: Tensor, levels: Tensor):  # type: ignore[override]
        scales = pact_scale(levels, hi.detach(), None if lo is None else lo.detach())
        p = levels.shape[0]
        ctx.signed, ctx.cpu = lo is not None, x.device.type == "cpu"
        if ctx.cpu:  # bounds and scales as floats: no per-precision select/item ops
            his, sc = hi.tolist(), scales.tolist()
            los = lo.tolist() if lo is not None else [0.0] * p
            ctx.bounds = (los, his)
            qs = [_quantize_cpu(x, los[j], his[j], sc[j], divide=False) for j in range(p)]
        else:
            qs = [_quantize(x, None if lo is None else lo[j], hi[j], scales[j], divide=False)
                  for j in range(p)]
        # integer levels q_j = floor(S_j * clamp(x)); the 1/S_j goes into the mixture weights, which
        # saves one full pass per precision: out = sum_j (theta_j / S_j) * q_j
        coef = (theta / scales).unbind(0)
        out = qs[0] * coef[0]
        for j in range(1, p):
            out.addcmul_(qs[j], coef[j])  # one fused pass, no host sync
        keep = qs if ctx.needs_input_grad[3] else []
        ctx.save_for_backward(x, hi, lo if lo is not None else hi, theta, scales, *keep)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, hi, lo, theta, scales, *qs = ctx.saved_tensors
        p = theta.shape[0]
        need_x, need_lo, need_hi = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if ctx.cpu:
            grad_x, grad_lo, grad_hi = _mixed_backward_cpu(ctx, grad, x, theta)
        else:
            grad_x = torch.zeros_like(x) if need_x else None
            grad_hi = torch.zeros_like(hi) if need_hi else None
            grad_lo = torch.zeros_like(hi) if ctx.signed and need_lo else None
            for j in range(p):
                inside, above, below = _masks(x, lo[j] if ctx.signed else None, hi[j])
                if grad_x is not None:
                    grad_x.addcmul_(torch.where(inside, grad, 0.0), theta[j])
                if grad_hi is not None:
                    grad_hi[j] = torch.where(above, grad, 0.0).sum() * theta[j]
                if grad_lo is not None:
                    grad_lo[j] = torch.where(below, grad, 0.0).sum() * theta[j]
        g = grad.reshape(-1)
        # dL/dtheta_j = <g, PACT_j(x)> = <g, q_j> / S_j
        grad_theta = torch.stack([torch.dot(g, q.reshape(-1)) for q in qs]) / scales if qs else None
        return grad_x, grad_lo, grad_hi, grad_theta, None


def _mixed_backward_cpu(ctx, grad: Tensor, x: Tensor, theta: Tensor):  # type: ignore[no-untyped-def]
    """``dL/dx``, ``dL/dlo``, ``dL/dhi`` of :class:`_MixedPact` on the CPU with the fused mask kernels of
    :func:`_pact_backward_cpu`; the per-precision clip sums are stacked, not written one by one."""
    los, his = ctx.bounds
    need_x, need_lo, need_hi = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]
    need_lo = need_lo and ctx.signed
    th = theta.tolist()
    grad_x, inside_sums, over = None, [], {}
    for j in range(len(th)):
        inside = torch.ops.aten.hardtanh_backward(grad, x, los[j], his[j])
        if need_hi:
            inside_sums.append(inside.sum())
        if need_hi or need_lo:
            if los[j] not in over:  # x > lower
                over[los[j]] = torch.ops.aten.threshold_backward(grad, x, los[j]).sum()
        if need_x:  # sum_j theta_j * (grad where lo_j < x < hi_j)
            grad_x = inside.mul_(th[j]) if grad_x is None else grad_x.add_(inside, alpha=th[j])
    overs = torch.stack([over[lo] for lo in los]) if need_hi or need_lo else None
    grad_hi = (overs - torch.stack(inside_sums)) * theta if need_hi else None  # x >= hi_j
    grad_lo = (grad.sum() - overs) * theta if need_lo else None  # x <= lo_j
    return grad_x, grad_lo, grad_hi


def mixed_pact(
    x: Tensor,
    hi: Tensor,
    theta: Tensor,
    bits: Tensor,
    lo: Tensor | None = None,
    *,
    levels: Tensor | None = None,
    fused: bool = False,
) -> Tensor:
    """``sum_j theta_j * PACT_{bits_j}(x)``; unsigned when ``lo`` is None, signed otherwise.

    ``levels`` (= ``2^bits - 1`` as floats) may be passed precomputed to save work in the hot loop.
    ``fused`` runs the compiled one-pass kernels of :mod:`jpq.quant.fused` (same values).
    """
    lv = pact_levels(bits, x.dtype) if levels is None else levels
    if fused:
        from jpq.quant.fused import pact_kernels

        single, mixed = pact_kernels(x)
    else:
        single, mixed = _Pact, _MixedPact
    if lv.shape[0] == 1:  # one precision: theta is identically 1 (softmax or argmax of a single logit)
        level = lv if fused else lv[0]  # the fused kernels take it as (1,): no indexing op
        return single.apply(x, lo, hi, level) if hi.shape == (1,) else single.apply(
            x, None if lo is None else lo[0:1], hi[0:1], level)
    return mixed.apply(x, lo, hi, theta, lv)


def pact_scale(levels: Tensor, hi: Tensor, lo: Tensor | None = None) -> Tensor:
    """The forward scale ``S = (2^a - 1) / (hi - lo + 1e-3)`` (``lo = 0`` when unsigned) of PACT (§2.2)."""
    span = hi if lo is None else hi - lo
    return levels / (span + PACT_EPS)


def fixed_pact(x: Tensor, hi: Tensor, levels: Tensor, lo: Tensor | None = None) -> Tensor:
    """Single-precision PACT with tensor clips, ``floor(S * clamp(x, lo or 0, hi)) / S``, in plain torch
    operations (no custom autograd): what the exported graph and its ONNX file run."""
    scale = pact_scale(levels, hi, lo)
    xc = torch.clamp(x, min=0.0).clamp(max=hi) if lo is None else torch.clamp(x, lo, hi)
    return torch.floor(xc * scale) / scale


def pact(x: Tensor, clip: float | Tensor, bits: int) -> Tensor:
    """Single-precision unsigned PACT (reference for tests and export)."""
    c = torch.as_tensor(clip, dtype=x.dtype, device=x.device)
    return fixed_pact(x, c, torch.tensor(2.0**bits - 1.0, dtype=x.dtype, device=x.device))


def act_scale(hi: Tensor, bits: Tensor, lo: Tensor | None = None) -> Tensor:
    """Scale used for bias quantization, ``clip / (2^a - 1)`` (§2.2; no +1e-3, §11 item 10)."""
    span = hi if lo is None else hi - lo
    return span / pact_levels(bits, hi.dtype)
