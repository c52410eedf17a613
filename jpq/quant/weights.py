"""Weight fake-quantization: symmetric per-output-channel min-max (docs/method.md §2.1) and the
per-channel mixture of precisions used by the search (§4), fused into one autograd function.

Quantizer for precision ``p > 0`` and output channel ``c``::

    m_c = max|W_c|;  range = 2*m_c (1 if 0);  s_c(p) = range / (2^p - 1)
    Q_p(W_c) = min(round_half_even(W_c / s_c(p)), 2^(p-1) - 1) * s_c(p)      (upper clip only)
    Q_0(W) = 0

The straight-through estimator is the identity for every ``p`` including 0 (§2.1), so
``dL/dW = sum_i theta_i * dL/dW_eff`` and ``dL/dtheta_i[c] = <dL/dW_eff[c], Q_{p_i}(W_c)>``.
The fused function keeps the (weight-sized, small) quantized tensors for the theta gradient, so the
search step costs one conv per layer (§4) and nothing is computed twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor


class WeightGrid(NamedTuple):
    """Per-precision constants of the weight quantizer, shaped (P, 1, 1) for broadcasting over (P, C, K)."""

    levels: Tensor  # 2^p - 1 (1 for p = 0, unused)
    upper: Tensor  # 2^(p-1) - 1, the upper clip
    nonzero: Tensor  # 0 for p = 0, else 1


def weight_grid(bits: Tensor, dtype: torch.dtype = torch.float32) -> WeightGrid:
    b = bits.to(dtype).view(-1, 1, 1)
    return WeightGrid((2.0**b - 1.0).clamp_min(1.0), 2.0 ** (b - 1.0) - 1.0, (b > 0).to(dtype))


def grid_scales(w: Tensor, grid: WeightGrid) -> Tensor:
    """Scales ``s_c(p)`` (P, C, 1) of ``w`` (C, ...) for every precision of ``grid`` (0 for p = 0)."""
    rng = 2.0 * w.detach().reshape(w.shape[0], -1).abs().amax(dim=1, keepdim=True)  # (C, 1)
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    return rng.unsqueeze(0) / grid.levels * grid.nonzero


def _levels(flat: Tensor, s: Tensor, upper: Tensor) -> Tensor:
    """The integer levels ``min(round(W/s), upper)`` (``W`` itself rounded where s = 0)."""
    safe = torch.where(s > 0, s, torch.ones_like(s))
    return torch.minimum(torch.round(flat / safe), upper)


def _quantize(flat: Tensor, s: Tensor, upper: Tensor) -> Tensor:
    """``min(round(W/s), upper) * s`` for every precision: (P, C, K); zeros where s = 0."""
    return _levels(flat.unsqueeze(0), s, upper) * s


def channel_scales(w: Tensor, bits: Tensor) -> Tensor:
    """Scales ``s_c(p)`` for every precision in ``bits`` (P,) and output channel: shape (P, C, 1).

    Zero-bit rows get scale 0 (§2.3: a pruned channel's bias quantizes to 0).
    """
    return grid_scales(w, weight_grid(bits, w.dtype))


def quantize_all(w: Tensor, bits: Tensor) -> Tensor:
    """``Q_p(W)`` for every ``p`` in ``bits``: shape (P, C, K) with ``K = W[0].numel()``; zeros for p = 0."""
    grid = weight_grid(bits, w.dtype)
    return _quantize(w.detach().reshape(w.shape[0], -1), grid_scales(w, grid), grid.upper)


class _MixedWeight(torch.autograd.Function):
    """``W_eff[c] = sum_i theta[i, c] * Q_{p_i}(W_c)`` with the identity STE (§4)."""

    @staticmethod
    def forward(ctx, w: Tensor, theta: Tensor, s: Tensor, upper: Tensor) -> Tensor:  # type: ignore[override]
        q = _quantize(w.detach().reshape(w.shape[0], -1), s, upper)  # (P, C, K)
        ctx.save_for_backward(theta, q if ctx.needs_input_grad[1] else None)
        ctx.w_shape = w.shape
        return (theta.unsqueeze(-1) * q).sum(0).reshape(w.shape)  # (C, K); cheaper than a batched matmul

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        theta, q = ctx.saved_tensors
        g = grad.reshape(grad.shape[0], -1)  # (C, K)
        grad_w = grad_theta = None
        if ctx.needs_input_grad[0]:
            # identity STE for every branch, 0 bits included: sum_i theta_i (= 1 for a distribution)
            grad_w = (g * theta.sum(0).unsqueeze(1)).reshape(ctx.w_shape)
        if ctx.needs_input_grad[1]:
            grad_theta = (g.unsqueeze(0) * q).sum(-1)  # (P, C)
        return grad_w, grad_theta, None, None


def mixed_weight(
    w: Tensor, theta: Tensor, bits: Tensor, *, grid: WeightGrid | None = None, scales: Tensor | None = None
) -> Tensor:
    """Per-channel precision mixture of ``w`` (C_out, ...) with coefficients ``theta`` (P, C_out).

    ``grid`` and ``scales`` may be passed precomputed (the searchable layers reuse the scales for the
    bias quantizer).
    """
    if theta.shape != (bits.shape[0], w.shape[0]):
        raise ValueError(f"theta shape {tuple(theta.shape)} != (P={bits.shape[0]}, C={w.shape[0]})")
    grid = grid if grid is not None else weight_grid(bits, w.dtype)
    s = scales if scales is not None else grid_scales(w, grid)
    return _MixedWeight.apply(w, theta, s, grid.upper)


def quantize_weight(w: Tensor, bits_per_channel: Sequence[int] | Tensor) -> Tensor:
    """Plain (non-mixed) fake-quantization of ``w`` with one precision per output channel.

    Reference implementation of §2.1 used by tests and the export: a fixed-precision QAT layer.
    """
    b = torch.as_tensor(bits_per_channel, device=w.device)
    levels = torch.unique(b)
    q = quantize_all(w, levels)  # (P, C, K)
    pick = (b.view(1, -1) == levels.view(-1, 1)).to(w.dtype)  # (P, C)
    return torch.einsum("pc,pck->ck", pick, q).reshape(w.shape)


def weight_integers(w: Tensor, bits_per_channel: Sequence[int] | Tensor, scales: Tensor) -> Tensor:
    """The integers of ``Q_p(W)`` with one precision per output channel (§2.1):
    ``min(round(W_c / s_c), 2^(p_c - 1) - 1)``, shaped like ``w``, so that ``Q_p(W_c) = q_c * s_c`` exactly
    (the float operations of :func:`quantize_all`); ``scales`` (C,) are the ``s_c(p_c)``, 0 rows where 0."""
    upper = weight_grid(torch.as_tensor(bits_per_channel, device=w.device), w.dtype).upper.view(-1, 1)
    s = scales.reshape(-1, 1)
    q = _levels(w.detach().reshape(w.shape[0], -1), s, upper)
    return torch.where(s > 0, q, torch.zeros_like(q)).reshape(w.shape)
