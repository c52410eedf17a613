"""Weight fake-quantization: symmetric per-output-channel min-max (algorithm.md §2.1) and the
per-channel mixture of precisions used by the search (§4), fused into one autograd function.

Quantizer for precision ``p > 0`` and output channel ``c``::

    m_c = max|W_c|;  range = 2*m_c (1 if 0);  s_c(p) = range / (2^p - 1)
    Q_p(W_c) = min(round_half_even(W_c / s_c(p)), 2^(p-1) - 1) * s_c(p)      (upper clip only)
    Q_0(W) = 0

The straight-through estimator is the identity for every ``p`` including 0 (§2.1), so
``dL/dW = sum_i theta_i * dL/dW_eff`` and ``dL/dtheta_i[c] = <dL/dW_eff[c], Q_{p_i}(W_c)>``.
The fused function saves only ``W`` and ``theta`` and recomputes the (weight-sized, cheap)
quantized tensors in the backward pass, so the search step costs one conv per layer (§4).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def channel_scales(w: Tensor, bits: Tensor) -> Tensor:
    """Scales ``s_c(p)`` for every precision in ``bits`` (P,) and output channel: shape (P, C, 1).

    Zero-bit rows get scale 0 (§2.3: a pruned channel's bias quantizes to 0).
    """
    flat = w.detach().reshape(w.shape[0], -1)
    rng = 2.0 * flat.abs().amax(dim=1, keepdim=True)  # (C, 1)
    rng = torch.where(rng == 0, torch.ones_like(rng), rng)
    levels = (2.0 ** bits.to(w.dtype) - 1.0).clamp_min(1.0)  # (P,)  p=0 -> 1, masked below
    s = rng.unsqueeze(0) / levels.view(-1, 1, 1)  # (P, C, 1)
    return torch.where((bits > 0).view(-1, 1, 1), s, torch.zeros_like(s))


def quantize_all(w: Tensor, bits: Tensor) -> Tensor:
    """``Q_p(W)`` for every ``p`` in ``bits``: shape (P, C, K) with ``K = W[0].numel()``; zeros for p = 0."""
    flat = w.detach().reshape(w.shape[0], -1)  # (C, K)
    s = channel_scales(w, bits)  # (P, C, 1)
    upper = (2.0 ** (bits.to(w.dtype) - 1.0) - 1.0).view(-1, 1, 1)  # (P, 1, 1)
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.minimum(torch.round(flat.unsqueeze(0) / safe_s), upper) * s  # p = 0 -> * 0
    return q


class _MixedWeight(torch.autograd.Function):
    """``W_eff[c] = sum_i theta[i, c] * Q_{p_i}(W_c)`` with the identity STE (§4)."""

    @staticmethod
    def forward(ctx, w: Tensor, theta: Tensor, bits: Tensor) -> Tensor:  # type: ignore[override]
        q = quantize_all(w, bits)  # (P, C, K)
        ctx.save_for_backward(w, theta, bits)
        return torch.einsum("pc,pck->ck", theta, q).reshape(w.shape)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:  # type: ignore[override]
        w, theta, bits = ctx.saved_tensors
        g = grad.reshape(w.shape[0], -1)  # (C, K)
        grad_w = grad_theta = None
        if ctx.needs_input_grad[0]:
            # identity STE for every branch, 0 bits included: sum_i theta_i (= 1 for a distribution)
            grad_w = (g * theta.sum(0).unsqueeze(1)).reshape(w.shape)
        if ctx.needs_input_grad[1]:
            grad_theta = torch.einsum("ck,pck->pc", g, quantize_all(w, bits))
        return grad_w, grad_theta, None


def mixed_weight(w: Tensor, theta: Tensor, bits: Tensor) -> Tensor:
    """Per-channel precision mixture of ``w`` (C_out, ...) with coefficients ``theta`` (P, C_out)."""
    if theta.shape != (bits.shape[0], w.shape[0]):
        raise ValueError(f"theta shape {tuple(theta.shape)} != (P={bits.shape[0]}, C={w.shape[0]})")
    return _MixedWeight.apply(w, theta, bits)


def quantize_weight(w: Tensor, bits_per_channel: Sequence[int] | Tensor) -> Tensor:
    """Plain (non-mixed) fake-quantization of ``w`` with one precision per output channel.

    Reference implementation of §2.1 used by tests and the export: a fixed-precision QAT layer.
    """
    b = torch.as_tensor(bits_per_channel, device=w.device)
    levels = torch.unique(b)
    q = quantize_all(w, levels)  # (P, C, K)
    pick = (b.view(1, -1) == levels.view(-1, 1)).to(w.dtype)  # (P, C)
    return torch.einsum("pc,pck->ck", pick, q).reshape(w.shape)
