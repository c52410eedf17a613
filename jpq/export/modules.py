"""The fixed modules of the exported graph (docs/method.md §8): PACT at one precision, the class-order
gather, and the plain Conv/Linear that replaces a searchable layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from jpq.quant.activations import fixed_pact
from jpq.search.layers import SearchLayer, SearchLinear
from jpq.search.quantizers import ActQuantizer


class Pact(nn.Module):
    """PACT at one precision with frozen clips (docs/method.md §2.2): the argmax branch of an ActQuantizer.

    ``y = floor(S * clamp(x, 0, clip)) / S`` with ``S = (2^a - 1) / (clip + 1e-3)``; signed when ``clip_lo``
    is given (``clamp(x, clip_lo, clip)``, ``S = (2^a - 1) / (clip - clip_lo + 1e-3)``). The forward is
    :func:`jpq.quant.activations.fixed_pact`, the float operations of :func:`jpq.quant.mixed_pact`, so the
    outputs match it bit for bit; ``S`` is computed in the forward pass so that a ``.double()`` copy stays
    consistent with the fake-quant network.
    """

    def __init__(self, a_bits: int, clip: Tensor | float, clip_lo: Tensor | float | None = None) -> None:
        super().__init__()
        self.a_bits = int(a_bits)
        hi = torch.as_tensor(clip).detach().clone().reshape(())
        hi = hi if hi.is_floating_point() else hi.float()
        self.register_buffer("clip", hi)
        lo = (
            None if clip_lo is None else torch.as_tensor(clip_lo, dtype=hi.dtype).detach().clone().reshape(())
        )
        self.register_buffer("clip_lo", lo)
        self.register_buffer("levels", torch.tensor(2.0**self.a_bits - 1.0, dtype=hi.dtype))

    @property
    def signed(self) -> bool:
        return self.clip_lo is not None

    def forward(self, x: Tensor) -> Tensor:
        return fixed_pact(x, self.clip, self.levels, self.clip_lo)

    def extra_repr(self) -> str:
        lo = "" if self.clip_lo is None else f", clip_lo={float(self.clip_lo):.6g}"
        return f"a_bits={self.a_bits}, clip={float(self.clip):.6g}{lo}"


class OutputOrder(nn.Module):
    """Puts the precision-sorted classifier rows back into class order: ``out[:, k] = y[:, index[k]]``."""

    def __init__(self, index: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("index", torch.as_tensor(list(index), dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        return x.index_select(1, self.index)


def chosen_index(q: ActQuantizer) -> int:
    """The argmax branch a discretized ActQuantizer uses (torch.argmax: first maximum, §3.5)."""
    return 0 if len(q.bits) == 1 else int(torch.argmax(q.alpha.detach()))


def act_module(q: ActQuantizer) -> Pact:
    """The fixed :class:`Pact` of a discretized quantizer's chosen precision."""
    j = chosen_index(q)
    lo = None if q.clip_lo is None else q.clip_lo.detach()[j]
    return Pact(q.bits[j], q.clip_val.detach()[j], lo)


def plain_module(m: SearchLayer, weight: Tensor, bias: Tensor) -> nn.Module:
    """An ``nn.Conv1d/2d`` or ``nn.Linear`` with the exported weight and bias."""
    if isinstance(m, SearchLinear):
        lin = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype)
        lin.weight.data.copy_(weight)
        lin.bias.data.copy_(bias)
        return lin
    cls = nn.Conv2d if m.dims == 2 else nn.Conv1d  # type: ignore[attr-defined]
    out_ch = weight.shape[0]
    groups = out_ch if m.op == "dw" else 1
    in_ch = out_ch if m.op == "dw" else weight.shape[1]
    conv = cls(
        in_ch,
        out_ch,
        m.kernel_size,  # type: ignore[attr-defined]
        stride=m.stride,  # type: ignore[attr-defined]
        padding=m.padding,  # type: ignore[attr-defined]
        dilation=m.dilation,  # type: ignore[attr-defined]
        groups=groups,
        bias=True,
        dtype=weight.dtype,
    )
    conv.weight.data.copy_(weight)
    conv.bias.data.copy_(bias)
    return conv
