"""The interface between a searchable network and the cost models (docs/method.md §5).

Cost models never read layer internals: the search code describes every searched Conv/Linear by a
:class:`LayerSpec` whose tensor fields carry the *expected* (soft) channel counts and activation
probabilities of the current forward pass, so the cost is differentiable in the architecture logits.
With one-hot assignments (eval mode, fine-tune) the same fields hold integers and every cost model
returns the exact deployed cost.

All precision-indexed tensors are aligned with the *global* precision tuples below, whatever subset a
layer actually searches (entries of precisions a layer does not use are zero). This keeps every cost
model a handful of vectorised tensor operations over a stacked ``(L, ...)`` batch of layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

#: every weight precision jpq knows; 0 bits means "pruned channel"
W_BITS_ALL: tuple[int, ...] = (0, 2, 4, 8)
#: every activation precision jpq knows
A_BITS_ALL: tuple[int, ...] = (2, 4, 8)

LayerOp = Literal["conv", "dw", "linear"]


@dataclass
class LayerSpec:
    """One searched layer as the cost models see it.

    Attributes:
        name: qualified module name in the seed network (e.g. ``"conv2y"``).
        op: ``"conv"`` (standard Conv1d/Conv2d, groups == 1), ``"dw"`` (depthwise) or ``"linear"``.
        kernel: ``(kh, kw)``; ``(1, 1)`` for Linear, ``(k, 1)`` for Conv1d.
        out_hw: output spatial size ``(Ho, Wo)``; ``(1, 1)`` for Linear, ``(L, 1)`` for Conv1d.
        c_in: nominal input channels (``in_features`` for Linear; for depthwise the channel count).
        c_out: nominal output channels ``C_g`` of the layer (= of its sharing group).
        n_w: ``(len(W_BITS_ALL),)`` expected number of output channels at each weight precision,
            ``n_p = sum_c theta_W[p, c]``; sums to ``c_out``. ``n_w[0]`` is the expected number of pruned
            channels.
        cin_eff: scalar tensor, the effective number of input channels (§5.1): the producer group's
            ``C_eff`` times ``H*W`` after a flatten, or the constant input channel count. It carries the
            graph to the producer's logits; each cost model decides whether to detach it (§11 item 1).
        a_in: ``(len(A_BITS_ALL),)`` probabilities of the *input* activation precision of this layer
            (the producer group's activation quantizer, or the network-input quantizer).
    """

    name: str
    op: LayerOp
    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    c_in: int
    c_out: int
    n_w: Tensor
    cin_eff: Tensor
    a_in: Tensor

    @property
    def c_eff(self) -> Tensor:
        """Expected number of kept (non-pruned) output channels, ``C_g - n_0``."""
        return self.n_w[1:].sum()

    @property
    def macs_per_channel_pair(self) -> int:
        """``kh*kw*Ho*Wo``: MACs of one (input channel, output channel) pair."""
        return self.kernel[0] * self.kernel[1] * self.out_hw[0] * self.out_hw[1]


def uniform_spec(
    name: str,
    op: LayerOp,
    kernel: tuple[int, int],
    out_hw: tuple[int, int],
    c_in: int,
    c_out: int,
    w_bits: int,
    a_bits: int = 8,
    cin_eff: float | None = None,
) -> LayerSpec:
    """A one-hot spec: every output channel at ``w_bits``, input activations at ``a_bits``.

    Used for reference costs (the seed at a uniform precision, §5.6) and in tests.
    """
    n_w = torch.zeros(len(W_BITS_ALL))
    n_w[W_BITS_ALL.index(w_bits)] = float(c_out)
    a_in = torch.zeros(len(A_BITS_ALL))
    a_in[A_BITS_ALL.index(a_bits)] = 1.0
    cin = float(c_in if cin_eff is None else cin_eff)
    return LayerSpec(name, op, kernel, out_hw, c_in, c_out, n_w, torch.tensor(cin), a_in)
