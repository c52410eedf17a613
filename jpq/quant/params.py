"""The weight side of a searchable layer as one autograd node (docs/method.md §2.1, §2.3, §4).

``W_eff = sum_i theta_i * Q_{p_i}(W)`` and ``b_eff = quantize_bias(b, s_a * s_w_eff(theta))``: the values
of :func:`jpq.quant.mixed_weight` followed by :func:`jpq.quant.quantize_bias`, and the gradients of that
composition, computed with few tensor operations. This runs for every layer at every search step on
small tensors, where the time goes per operation (and per autograd node), not per element.

The 0-bit precision has scale 0, so it adds nothing to ``W_eff`` nor to ``dL/dtheta_0`` through the
weights: only the non-zero precisions are quantized. Gradients (identity STE, §2.1/§2.3)::

    dL/dW       = dL/dW_eff * sum_i theta_i
    dL/db       = dL/db_eff where s_b is kept (|s_b| > 1e-8), else 0
    dL/dtheta_i = <dL/dW_eff, Q_{p_i}(W)> + s_a * s_i * (dL/db_eff * b_q)
    dL/ds_a     = sum_c s_w[c] * dL/db_eff[c] * b_q[c]

with ``b_q`` the integer bias levels. The results equal the composed functions bit for bit.
"""

from __future__ import annotations

import torch
from torch import Tensor

from jpq.quant.bias import _ATOL
from jpq.quant.weights import WeightGrid


class _LayerParams(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, b, theta, s_a, levels, upper, nonzero, skip: int):  # type: ignore[override]
        flat = w.detach().reshape(w.shape[0], -1)  # (C, K)
        rng = 2.0 * flat.abs().amax(dim=1, keepdim=True)  # (C, 1)
        rng.masked_fill_(rng == 0, 1.0)
        s = rng.unsqueeze(0) / levels * nonzero  # (P, C, 1); 0 for p = 0
        sq = s[skip:]  # the non-zero precisions, s > 0
        q = torch.minimum(torch.round_(flat.unsqueeze(0) / sq), upper[skip:]).mul_(sq)  # (P', C, K)
        w_eff = (theta[skip:].unsqueeze(-1) * q).sum(0)
        s = s.squeeze(-1)  # (P, C)
        s_w = (theta * s).sum(0)  # (C,)
        s_b = s_a * s_w
        keep = s_b.abs() > _ATOL
        qb = torch.round(b / torch.where(keep, s_b, torch.ones_like(s_b))).mul_(keep)
        ctx.save_for_backward(theta, q if ctx.needs_input_grad[2] else None, s, s_a, s_w, keep, qb)
        ctx.skip = skip
        ctx.w_shape = w.shape
        return w_eff.view(w.shape), qb * s_b

    @staticmethod
    def backward(ctx, g_w: Tensor, g_b: Tensor):  # type: ignore[override]
        theta, q, s, s_a, s_w, keep, qb = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = g_w.reshape(g_w.shape[0], -1)
        grad_w = (g * theta.sum(0).unsqueeze(1)).reshape(ctx.w_shape) if need[0] else None
        grad_b = g_b * keep if need[1] else None
        g_sb = g_b * qb  # d(b_q * s_b)/d s_b
        grad_theta = grad_sa = None
        if need[2]:
            grad_theta = (g_sb * s_a).unsqueeze(0) * s  # through s_w (the bias scale)
            grad_theta[ctx.skip:] += (g.unsqueeze(0) * q).sum(-1)  # through W_eff
        if need[3]:
            grad_sa = (g_sb * s_w).sum().reshape(s_a.shape)
        return grad_w, grad_b, grad_theta, grad_sa, None, None, None, None


def mixed_layer_params(
    w: Tensor, b: Tensor, theta: Tensor, s_a: Tensor, grid: WeightGrid, skip_zero: bool
) -> tuple[Tensor, Tensor]:
    """``(W_eff, b_eff)`` of one layer: weight ``w`` (C, ...), bias ``b`` (C,), ``theta`` (P, C), the input's
    expected activation scale ``s_a`` (0-dim) and the precisions' ``grid``; ``skip_zero`` says that the
    first precision is 0 bits (it is left out of the weight quantization)."""
    if theta.shape != (grid.levels.shape[0], w.shape[0]):
        raise ValueError(f"theta shape {tuple(theta.shape)} != (P={grid.levels.shape[0]}, C={w.shape[0]})")
    return _LayerParams.apply(w, b, theta, s_a, grid.levels, grid.upper, grid.nonzero, int(skip_zero))
