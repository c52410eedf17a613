"""PIT's channel gate (docs/method.md §7): the channel source of one sharing group in the PIT search.

:class:`PitGate` stands where a :class:`~jpq.search.quantizers.GroupQuantizer` stands in the mixed-precision
search and answers the same questions (theta, the argmax, freezing, the chosen precision per channel), so
the searchable net, the cost models and the export treat both alike. Its "precisions" are (pruned,
kept-float): one mask logit ``gamma`` per channel, initialised to 1.0, a binary mask ``1[|gamma| > 0.5]``
with an identity straight-through estimator, and kept channels counted in the 8-bit slot of the layer
specs. There is no activation quantizer. :class:`PitConv`/:class:`PitLinear` mask their weights and bias
with it instead of quantizing them; :func:`jpq.search.convert` picks these classes for a PIT search.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from jpq.cost.spec import W_BITS_ALL
from jpq.search.layers import SearchConv, SearchLinear
from jpq.search.quantizers import _selector
from jpq.search.sampler import SamplerState


class PitGate(nn.Module):
    """The mask logits of a sharing group; the output group (``is_output``) cannot prune."""

    act = None  # float activations: no activation quantizer
    per_layer = False

    def __init__(
        self, index: int, channels: int, state: SamplerState, *, members: Sequence[str] = (), is_output: bool
    ) -> None:
        super().__init__()
        self.index = index
        self.channels = channels
        self.w_bits: tuple[int, ...] = (8,) if is_output else (0, 8)
        self.members = tuple(members)
        self.keep_alive = True  # the last channel is always kept
        self.state = state
        self.frozen = False
        self._is_output = is_output
        self.alpha = nn.Parameter(torch.ones(1, channels))
        self.register_buffer("bits_t", torch.tensor(self.w_bits), persistent=False)
        self.register_buffer("ones_theta", torch.ones(1, channels), persistent=False)
        self.register_buffer("sel", _selector(self.w_bits, W_BITS_ALL), persistent=False)
        self.last_theta: Tensor | None = None
        self._frozen_theta: Tensor | None = None

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._frozen_theta = None  # new logits: the argmax is recomputed
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def is_output(self) -> bool:
        return self._is_output

    @property
    def can_prune(self) -> bool:
        return 0 in self.w_bits

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

    def theta(self) -> Tensor:
        """theta (P, C) of one member's forward call: the STE mask while training, else the argmax."""
        if len(self.w_bits) == 1:
            th = self.ones_theta
        elif self.frozen:
            if self._frozen_theta is None:
                self._frozen_theta = self.argmax_theta()
            th = self._frozen_theta
        elif not self.training:
            th = self.argmax_theta()
        else:
            m = self._mask(hard_only=False)
            th = torch.stack([1.0 - m, m])
        self.last_theta = th
        return th

    def current_theta(self) -> Tensor:
        """theta of the last forward call (what the cost must see), else the argmax."""
        return self.last_theta if self.last_theta is not None else self.theta()

    def freeze(self) -> None:
        """Discretize: the mask logits frozen, the binary mask from now on."""
        self.frozen = True
        self.alpha.requires_grad_(False)
        self._frozen_theta = None
        self.last_theta = None

    def channel_bits(self) -> list[int]:
        """Per output channel: 0 (pruned) or 8 (kept; a float channel, costed in the 8-bit slot)."""
        idx = torch.argmax(self.argmax_theta(), dim=0)
        return [self.w_bits[int(i)] for i in idx]

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
