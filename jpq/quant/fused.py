"""The fused search step (``trainer.search_step=fused``, the default; docs/architecture.md): PACT, its
precision mixture and each layer's weight side as one-pass kernels instead of one pass per elementary op.

The eager functions of :mod:`jpq.quant.activations` and :mod:`jpq.quant.params` make one pass over a
tensor per elementary op (clamp, scale, floor, divide; then one or two per gradient), i.e. 4 + 3 passes for
one precision and about 4 per precision for a mixture, each a parallel region of its own. Fused:

* the forward is one pass: ``out = sum_j (theta_j / S_j) * floor(S_j * clamp(x, lo_j, hi_j))``, nothing but
  ``x`` kept for the backward;
* the backward is one pass over ``(grad, x)`` giving ``dL/dx`` and every clip and theta gradient at once
  (the integer levels are recomputed instead of stored).

Two implementations of the same arithmetic: on the CPU the C kernels of :mod:`jpq.quant.native` (built
with the system C compiler once per process); on an accelerator the tensor expressions below, compiled
with ``torch.compile`` (Triton on CUDA). :func:`pact_kernels` and :func:`layer_params_kernel` pick one.
The native forward values and ``dL/dx`` are the eager ones bit for bit (the same float operations in the
same order); the compiled mixture may differ from them by one rounding of its sum. Clip, theta and scale
gradients are sums taken in another order.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from jpq.errors import ConfigError
from jpq.quant.activations import PACT_EPS

STEPS = ("fused", "eager")


def check_step(step: str, on_cpu: bool = True, *, wait: bool = True) -> None:
    """Refuse an unknown ``search_step``; for ``fused``, build the CPU kernels now (a missing or failing C
    compiler is one line before any data is loaded; ``wait=False`` starts the build in the background,
    :func:`jpq.quant.native.join` waits for it), or on an accelerator require Triton."""
    if step not in STEPS:
        raise ConfigError(f"search_step={step!r}: choose fused or eager")
    if step != "fused":
        return
    if on_cpu:
        from jpq.quant import native

        native.build(wait=wait)
    elif importlib.util.find_spec("triton") is None:
        raise ConfigError(
            "search_step=fused on CUDA compiles its kernels with Triton, which is not installed "
            "(install triton or use trainer.search_step=eager)"
        )


# -- the kernels, as plain tensor code (x flat, bounds 0-dim or (P,)) ------------------------------
def _pact_fwd(x: Tensor, lo: Tensor, hi: Tensor, scale: Tensor) -> Tensor:
    return torch.floor(torch.clamp(x, lo, hi) * scale) / scale


def _pact_bwd(g: Tensor, x: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    inside = (x > lo) & (x < hi)
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    return (
        torch.where(inside, g, zero),
        torch.where(x >= hi, g, zero).sum(),
        torch.where(x <= lo, g, zero).sum(),
    )


def _mixed_fwd(x: Tensor, lo: Tensor, hi: Tensor, scale: Tensor, coef: Tensor) -> Tensor:
    # the eager order: q_0 * c_0, then + q_j * c_j for j = 1..P-1 (addcmul_)
    out = torch.floor(torch.clamp(x, lo[0], hi[0]) * scale[0]) * coef[0]
    for j in range(1, lo.shape[0]):
        out = out + torch.floor(torch.clamp(x, lo[j], hi[j]) * scale[j]) * coef[j]
    return out


def _mixed_bwd(
    g: Tensor, x: Tensor, lo: Tensor, hi: Tensor, scale: Tensor, theta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    gx, ghi, glo, gth = None, [], [], []
    for j in range(lo.shape[0]):
        inside = (x > lo[j]) & (x < hi[j])
        term = torch.where(inside, g, zero) * theta[j]
        gx = term if gx is None else gx + term
        ghi.append(torch.where(x >= hi[j], g, zero).sum() * theta[j])
        glo.append(torch.where(x <= lo[j], g, zero).sum() * theta[j])
        q = torch.floor(torch.clamp(x, lo[j], hi[j]) * scale[j])
        gth.append((g * q).sum() / scale[j])  # <g, PACT_j(x)> = <g, q_j> / S_j
    assert gx is not None
    return gx, torch.stack(ghi), torch.stack(glo), torch.stack(gth)


@functools.cache
def _compiled(name: str) -> Callable[..., Any]:
    """The compiled kernel ``name``, built at its first use (the first call compiles, later ones reuse)."""
    kernels = {"pact_fwd": _pact_fwd, "pact_bwd": _pact_bwd, "mixed_fwd": _mixed_fwd, "mixed_bwd": _mixed_bwd,
               "params_fwd": _params_fwd, "params_bwd": _params_bwd}
    fn = kernels[name]
    # dynamic shapes from the first call; views of differently shaped layers still add a few guarded
    # variants per kernel, so the limit on variants is raised (past it torch would run the kernel eagerly)
    import torch._dynamo

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    return torch.compile(fn, fullgraph=True, dynamic=True)


def _flat(x: Tensor) -> Tensor:
    return x.detach().reshape(-1)  # no autograd flags in what the kernels see (no recompilation for them)


def _bounds(lo: Tensor | None, hi: Tensor) -> Tensor:
    return torch.zeros_like(hi) if lo is None else lo


class FusedPact(torch.autograd.Function):
    """One precision (``theta = 1``); ``lo``/``hi`` are (1,), ``level`` 0-dim."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, level: Tensor) -> Tensor:  # type: ignore[override]
        span = hi if lo is None else hi - lo
        scale = (level / (span.detach() + PACT_EPS)).reshape(())
        lo_t = _bounds(lo, hi).detach().reshape(())
        hi_t = hi.detach().reshape(())
        ctx.save_for_backward(x, lo_t, hi_t)
        ctx.signed = lo is not None
        return _compiled("pact_fwd")(_flat(x), lo_t, hi_t, scale).view(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lo, hi = ctx.saved_tensors
        gx, ghi, glo = _compiled("pact_bwd")(_flat(grad), _flat(x), lo, hi)
        grad_lo = glo.reshape(1) if ctx.signed and ctx.needs_input_grad[1] else None
        grad_hi = ghi.reshape(1) if ctx.needs_input_grad[2] else None
        return gx.view(x.shape) if ctx.needs_input_grad[0] else None, grad_lo, grad_hi, None


class FusedMixedPact(torch.autograd.Function):
    """Mixture over ``P > 1`` precisions; ``lo``/``hi``/``theta``/``levels`` are (P,)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, theta: Tensor, levels: Tensor):  # type: ignore[override]
        span = hi if lo is None else hi - lo
        scales = levels / (span.detach() + PACT_EPS)
        lo_t, hi_t = _bounds(lo, hi).detach(), hi.detach()
        out = _compiled("mixed_fwd")(_flat(x), lo_t, hi_t, scales, theta.detach() / scales)
        ctx.save_for_backward(x, lo_t, hi_t, scales, theta.detach())
        ctx.signed = lo is not None
        return out.view(x.shape)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lo, hi, scales, theta = ctx.saved_tensors
        gx, ghi, glo, gth = _compiled("mixed_bwd")(_flat(grad), _flat(x), lo, hi, scales, theta)
        need = ctx.needs_input_grad
        return (
            gx.view(x.shape) if need[0] else None,
            glo if ctx.signed and need[1] else None,
            ghi if need[2] else None,
            gth if need[3] else None,
            None,
        )


# -- the weight side of one layer: mixture of the quantized weights and the derived-scale bias -------
def _params_fwd(
    w: Tensor, b: Tensor, theta: Tensor, s_a: Tensor, levels: Tensor, upper: Tensor, nonzero: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``W_eff``, ``b_eff`` (jpq.quant.weights, jpq.quant.bias) and what the backward needs."""
    rng = 2.0 * w.abs().amax(dim=1, keepdim=True)  # (C, 1)
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    s = rng.unsqueeze(0) / levels * nonzero  # (P, C, 1)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.minimum(torch.round(w.unsqueeze(0) / safe), upper) * s  # (P, C, K)
    w_eff = (theta.unsqueeze(-1) * q).sum(0)
    s_w = (theta * s.squeeze(-1)).sum(0)  # (C,)
    s_b = s_a * s_w
    keep = s_b.abs() > 1e-8
    qb = torch.round(b / torch.where(keep, s_b, torch.ones_like(s_b))) * keep
    return w_eff, qb * s_b, s.squeeze(-1), s_w, qb


def _params_bwd(
    g_w: Tensor, g_b: Tensor, w: Tensor, theta: Tensor, s_a: Tensor, s: Tensor, s_w: Tensor, qb: Tensor,
    upper: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradients to ``w`` (identity STE), ``b`` (identity where kept), ``theta`` and ``s_a``."""
    safe = torch.where(s > 0, s, torch.ones_like(s)).unsqueeze(-1)
    q = torch.minimum(torch.round(w.unsqueeze(0) / safe), upper) * s.unsqueeze(-1)  # recomputed (P, C, K)
    g_sb = g_b * qb  # d(qb * s_b)/d s_b = qb
    grad_theta = (g_w.unsqueeze(0) * q).sum(-1) + (g_sb * s_a).unsqueeze(0) * s
    keep = (s_a * s_w).abs() > 1e-8
    return g_w * theta.sum(0).unsqueeze(1), g_b * keep, grad_theta, (g_sb * s_w).sum()


class FusedLayerParams(torch.autograd.Function):
    """``(W_eff, b_eff)`` of a searchable layer in one compiled kernel forward and one backward
    (``skip``, the number of 0-bit precisions, is what the native kernel takes; here they are masked)."""

    @staticmethod
    def forward(ctx, w, b, theta, s_a, levels, upper, nonzero, skip: int):  # type: ignore[override]
        flat = w.detach().reshape(w.shape[0], -1)
        w_eff, b_eff, s, s_w, qb = _compiled("params_fwd")(
            flat, b.detach(), theta.detach(), s_a.detach(), levels, upper, nonzero
        )
        ctx.save_for_backward(flat, theta.detach(), s_a.detach(), s, s_w, qb, upper)
        ctx.w_shape = w.shape
        return w_eff.view(w.shape), b_eff

    @staticmethod
    def backward(ctx, g_w: Tensor, g_b: Tensor):  # type: ignore[override]
        flat, theta, s_a, s, s_w, qb, upper = ctx.saved_tensors
        gw, gb, gth, gsa = _compiled("params_bwd")(
            g_w.reshape(flat.shape), g_b, flat, theta, s_a, s, s_w, qb, upper
        )
        return gw.view(ctx.w_shape), gb, gth, gsa.reshape(s_a.shape), None, None, None, None


def pact_kernels(x: Tensor) -> tuple[type[torch.autograd.Function], type[torch.autograd.Function]]:
    """The fused (single, mixture) PACT functions for ``x``: the native C kernels on the CPU
    (:mod:`jpq.quant.native`), the compiled ones elsewhere."""
    from jpq.quant import native

    return (native.NativePact, native.NativeMixedPact) if native.supports(x) else (FusedPact, FusedMixedPact)


def layer_params_kernel(w: Tensor) -> type[torch.autograd.Function]:
    """The fused weight-side function for ``w``: native on the CPU, compiled elsewhere."""
    from jpq.quant import native

    return native.NativeLayerParams if native.supports(w) else FusedLayerParams
