"""Bias fake-quantization with a derived scale (algorithm.md §2.3).

``s_b[c] = s_a_eff * s_w_eff[c]`` with ``s_a_eff`` the expected scale of the layer's input activation
quantizer and ``s_w_eff[c] = sum_i theta[i, c] * s_c(p_i)`` (``s_c(0) = 0``). ``b_q = round(b/s_b)*s_b``,
or 0 where ``s_b`` is (close to) 0, i.e. for a pruned channel. No clipping (nominally 32 bit, §11 item 11).
The STE is the identity w.r.t. ``b``; the gradient reaches ``theta`` (weights and input activations)
through the final ``* s_b`` only: clip and ``max|W|`` enter detached.
"""

from __future__ import annotations

import torch
from torch import Tensor


def quantize_bias(b: Tensor, s_b: Tensor) -> Tensor:
    """``round(b / s_b) * s_b`` with the identity STE in ``b``; 0 where ``s_b`` is ~0."""
    zero = torch.isclose(s_b, torch.zeros_like(s_b))
    safe = torch.where(zero, torch.ones_like(s_b), s_b)
    ratio = b / safe.detach()
    q = ratio + (torch.round(ratio) - ratio).detach()  # identity STE
    return torch.where(zero, torch.zeros_like(b), q * safe)
