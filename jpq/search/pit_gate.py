"""PIT's channel gate (docs/method.md §7): the channel source of one sharing group in the PIT search.

:class:`PitGate` stands where a :class:`~jpq.search.quantizers.GroupQuantizer` stands in the mixed-precision
search; both are a :class:`~jpq.search.quantizers.ChannelGate` (theta, the argmax, freezing, the chosen
precision per channel), so the searchable net, the cost models and the export treat both alike. Its
"precisions" are (pruned, kept-float): one mask logit ``gamma`` per channel, initialised to 1.0, a binary
mask ``1[|gamma| > 0.5]`` with an identity straight-through estimator, and kept channels counted in the
8-bit slot of the layer specs. There is no activation quantizer. :class:`PitConv`/:class:`PitLinear` mask
their weights and bias with it instead of quantizing them; :func:`jpq.search.convert` picks these classes
for a PIT search.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from jpq.search.layers import SearchConv, SearchLinear
from jpq.search.quantizers import ChannelGate
from jpq.search.sampler import SamplerState


class PitGate(ChannelGate):
    """The mask logits of a sharing group; the output group (``is_output``) cannot prune."""

    act = None  # float activations: no activation quantizer

    def __init__(
        self, index: int, channels: int, state: SamplerState, *, members: Sequence[str] = (), is_output: bool
    ) -> None:
        w_bits = (8,) if is_output else (0, 8)
        super().__init__(index, channels, w_bits, state, members=members, is_output=is_output)
        self.keep_alive = True  # the last channel is always kept
        self.alpha = nn.Parameter(torch.ones(1, channels))

    def _mask(self, hard_only: bool) -> Tensor:
        """The binary mask ``1[|gamma| > 0.5]`` with an identity STE; the last channel is always kept."""
        g = self.alpha[0]
        m = (g.detach().abs() > 0.5).to(g.dtype)
        m[-1] = 1.0
        return m if hard_only else m + (g - g.detach())

    def argmax_theta(self) -> Tensor:
        """One-hot (P, C): row 0 pruned, row 1 kept (a single row for the output group)."""
        m = self._mask(hard_only=True)
        return torch.stack([1.0 - m, m]) if self.can_prune else self.ones_theta

    def _sampled_theta(self) -> Tensor:
        m = self._mask(hard_only=False)  # the straight-through mask
        return torch.stack([1.0 - m, m])

    def init_rescale(self) -> float:
        """Float weights are masked, never rescaled."""
        return 1.0


class _Masked:
    """``quantized_params`` of a PIT layer: float weight and bias times its group's mask."""

    weight: nn.Parameter
    bias: nn.Parameter

    def quantized_params(self) -> tuple[Tensor, Tensor]:
        mask = self.group.theta()[-1]  # type: ignore[attr-defined]
        return self.weight * mask.view(-1, *([1] * (self.weight.dim() - 1))), self.bias * mask


class PitConv(_Masked, SearchConv):
    """A Conv1d/Conv2d of the PIT search: channels masked, weights float."""


class PitLinear(_Masked, SearchLinear):
    """A Linear of the PIT search: channels masked, weights float."""
