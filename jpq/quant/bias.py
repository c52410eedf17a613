"""Bias fake-quantization with a derived scale (docs/method.md §2.3).

``s_b[c] = s_a_eff * s_w_eff[c]`` with ``s_a_eff`` the expected scale of the layer's input activation
quantizer and ``s_w_eff[c] = sum_i theta[i, c] * s_c(p_i)`` (``s_c(0) = 0``). ``b_q = round(b/s_b)*s_b``,
or 0 where ``s_b`` is (close to) 0, i.e. for a pruned channel. No clipping (nominally 32 bit, §11 item 11).
The STE is the identity w.r.t. ``b``; the gradient reaches ``theta`` (weights and input activations)
through the final ``* s_b`` only: clip and ``max|W|`` enter detached.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: ``torch.isclose``'s default absolute tolerance (its relative term vanishes against 0)
_ATOL = 1e-8


def _levels(b: Tensor, s_b: Tensor, keep: Tensor) -> Tensor:
    """The integer levels ``round(b / s_b)``, 0 where not ``keep``."""
    return torch.round(b / torch.where(keep, s_b, torch.ones_like(s_b))).mul_(keep)


class _QuantBias(torch.autograd.Function):
    """``round(b / s) * s`` (0 where ``s`` ~ 0) in one node: this runs for every layer at every step, and
    the composite of isclose/where/round/STE ops costs a dozen small kernels forward and backward."""

    @staticmethod
    def forward(ctx, b: Tensor, s_b: Tensor) -> Tensor:  # type: ignore[override]
        keep = s_b.abs() > _ATOL  # torch.isclose(s_b, 0) with its default atol, negated
        q = _levels(b, s_b, keep)
        ctx.save_for_backward(keep, q)
        ctx.shapes = (b.shape, s_b.shape)
        return q * s_b

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        keep, q = ctx.saved_tensors
        b_shape, s_shape = ctx.shapes
        # identity STE in b (0 where the channel is pruned); d(q*s)/ds = q
        return (grad * keep).sum_to_size(b_shape), (grad * q).sum_to_size(s_shape)


def quantize_bias(b: Tensor, s_b: Tensor) -> Tensor:
    """``round(b / s_b) * s_b`` with the identity STE in ``b``; 0 where ``s_b`` is ~0."""
    return _QuantBias.apply(b, s_b)


def bias_integers(b: Tensor, s_b: Tensor) -> Tensor:
    """The integers of :func:`quantize_bias`: ``round(b / s_b)``, 0 where ``s_b`` is ~0 (no clipping)."""
    return _levels(b, s_b, s_b.abs() > _ATOL)
