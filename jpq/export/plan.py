"""The export plan of a discretized network (docs/method.md §8 "Correct procedure", steps 1-4).

For every sharing group ``g`` (§1.4) the channel precisions ``p*(c)`` (§3.5) give the permutation ``pi_g``:
the kept channels (``p* != 0``) sorted by precision, 8 then 4 then 2 bits, stable within a precision.
Every Conv/Linear of ``g`` (residual-add inputs, depthwise members) keeps rows ``W[pi_g]``; every consumer
of ``g`` keeps input columns ``W[:, pi_g]`` (expanded by ``H*W`` after a flatten: feature ``c*H*W + s``);
a depthwise conv keeps channels ``pi_g`` and ``groups = |pi_g|``. So each layer becomes one sub-layer per
precision (Fig. 3), and the deployed weight memory equals the eval-mode size cost (§5.2, §8 item 6).

The integers come from the quantizers of :mod:`jpq.quant` (weights §2.1, biases §2.3, activation scales
§2.2), so ``w_int * w_scale`` is exactly the fake-quantized weight the search network uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from jpq.errors import UnsupportedModelError
from jpq.export.modules import chosen_index, plain_module
from jpq.quant import act_scale, channel_scales
from jpq.quant.activations import pact_scale
from jpq.quant.bias import bias_integers
from jpq.quant.weights import weight_integers
from jpq.search import SearchableNet
from jpq.search.layers import SearchLayer
from jpq.search.quantizers import ActQuantizer


@dataclass
class GroupPlan:
    """Pruning and precision order of one sharing group (§8 steps 1-2)."""

    index: int
    members: tuple[str, ...]
    channels: int
    bits: list[int]  # chosen precision per original channel, 0 = pruned
    order: list[int]  # kept channels sorted by precision (8, 4, 2), stable within a precision
    a_bits: int | None  # None: the output group (float logits)
    clip: float | None
    is_output: bool

    @property
    def sorted_bits(self) -> list[int]:
        return [self.bits[c] for c in self.order]


@dataclass
class ExportedLayer:
    """One searched layer after pruning and reordering, with its integer form (§8 step 3)."""

    name: str
    op: str  # conv | dw | linear
    group: int
    in_group: int | None
    weight: Tensor  # exported fake-quant weight, (C', Cin', *k) / (C', 1, *k) / (C', Cin')
    bias: Tensor  # exported fake-quant bias (C',)
    w_int: Tensor  # int64 integers, weight = w_int * w_scale[:, None...]
    w_scale: Tensor  # (C',) per-row weight scale s_c(p)
    w_bits: list[int]  # per row, non-increasing
    b_int: Tensor  # (C',) int64 bias integers at scale b_scale
    b_scale: Tensor  # (C',) s_b = s_a * s_w
    channel_index: list[int]  # original output channel of every row
    in_index: list[int] | None  # original input channel/feature of every column (None: all, in order)
    in_a_bits: int
    in_scale: float  # s_a = clip / (2^a - 1) of the input quantizer (bias scale, §2.3)
    module: nn.Module  # the plain Conv/Linear

    def blocks(self) -> list[tuple[int, int, int]]:
        """``(w_bits, start, stop)`` row ranges of the per-precision sub-layers."""
        out: list[tuple[int, int, int]] = []
        for i, b in enumerate(self.w_bits):
            if out and out[-1][0] == b:
                out[-1] = (b, out[-1][1], i + 1)
            else:
                out.append((b, i, i + 1))
        return out


def precision_order(bits: Sequence[int]) -> list[int]:
    """Kept channels (``bits != 0``) sorted by precision, highest first, stable within a precision."""
    return sorted((c for c, b in enumerate(bits) if b != 0), key=lambda c: -bits[c])


def act_info(q: ActQuantizer) -> dict[str, Any]:
    """Bits, clips and both scales of a fixed PACT: the forward ``S`` and the bias scale ``s_a`` (§11.10)."""
    j = chosen_index(q)
    a = q.bits[j]
    hi_t = q.clip_val.detach()[j]
    lo_t = None if q.clip_lo is None else q.clip_lo.detach()[j]
    # S as the float32 forward has it; s_a in float64 (the value a runtime reads)
    s = pact_scale(torch.tensor(2.0**a - 1.0), hi_t.float(), None if lo_t is None else lo_t.float())
    s_a = act_scale(hi_t.double(), torch.tensor(a), None if lo_t is None else lo_t.double())
    return {
        "a_bits": a,
        "signed": lo_t is not None,
        "clip": float(hi_t),
        "clip_lo": None if lo_t is None else float(lo_t),
        "pact_scale": float(s),
        "scale_bias": float(s_a),
    }


def plan_groups(net: SearchableNet) -> list[GroupPlan]:
    """One :class:`GroupPlan` per sharing group of a discretized network."""
    plans = []
    for g in net.groups:
        bits = [int(b) for b in g.channel_bits()]
        order = precision_order(bits)
        if not order:
            raise UnsupportedModelError(
                f"sharing group {g.index} ({', '.join(g.members)}) has every channel pruned: the network "
                "output does not depend on its input; nothing to export (search with keep_alive=true)"
            )
        info = None if g.act is None else act_info(g.act)
        plans.append(
            GroupPlan(
                index=g.index,
                members=tuple(g.members),
                channels=g.channels,
                bits=bits,
                order=order,
                a_bits=None if info is None else info["a_bits"],
                clip=None if info is None else info["clip"],
                is_output=g.act is None,
            )
        )
    return plans


def _expand(order: Sequence[int], mult: int) -> list[int]:
    """Feature indices of channels ``order`` after a flatten of ``mult = H*W`` values per channel."""
    if mult == 1:
        return list(order)
    idx = torch.as_tensor(list(order)).view(-1, 1) * mult + torch.arange(mult).view(1, -1)
    return idx.reshape(-1).tolist()


def _integers(m: SearchLayer, plan: GroupPlan) -> dict[str, Tensor]:
    """Weight and bias integers of a layer at its chosen precisions, with their scales (§2.1, §2.3): the
    quantizers the discrete fake-quant forward runs, so ``w_int * w_scale == w_q`` exactly."""
    g = m.group  # type: ignore[attr-defined]
    w = m.weight.detach()
    theta = g.theta()  # frozen one-hot (P, C)
    scales = (theta * channel_scales(w, g.bits_t).squeeze(-1)).sum(0)  # (C,) s_c(p*(c)), 0 if pruned
    iq: ActQuantizer | None = m.in_quant  # type: ignore[assignment]
    s_a = iq.expected_scale(iq.current_theta()) if iq is not None else torch.ones(())
    s_b = s_a * scales
    return {
        "w_scale": scales,
        "s_a": s_a,
        "b_scale": s_b,
        "w_int": weight_integers(w, plan.bits, scales),
        "b_int": bias_integers(m.bias.detach(), s_b),
    }


@torch.no_grad()
def export_layers(net: SearchableNet, plans: Sequence[GroupPlan]) -> list[ExportedLayer]:
    """Prune, permute and integerize every searched layer (§8 steps 3-4)."""
    mods = dict(net.net.named_modules())
    out = []
    for li in net.layers:
        m = mods[li.name]
        if not isinstance(m, SearchLayer):
            raise TypeError(f"{li.name} is not a searchable layer")
        plan = plans[li.group]
        rows = torch.as_tensor(plan.order)
        w_q, b_q = m.quantized_params()  # exactly what the discrete fake-quant forward uses
        ints = _integers(m, plan)
        weight, w_int = w_q[rows], ints["w_int"][rows]
        in_index = None
        if li.op == "dw":
            if li.in_group != li.group:
                raise UnsupportedModelError(f"depthwise layer {li.name} is not in the group of its input")
        elif li.in_group is not None:
            in_index = _expand(plans[li.in_group].order, li.in_mult)
            cols = torch.as_tensor(in_index)
            weight, w_int = weight[:, cols], w_int[:, cols]
        weight, bias = weight.contiguous().clone(), b_q[rows].clone()
        iq: ActQuantizer | None = m.in_quant  # type: ignore[assignment]
        out.append(
            ExportedLayer(
                name=li.name,
                op=li.op,
                group=li.group,
                in_group=li.in_group,
                weight=weight,
                bias=bias,
                w_int=w_int.to(torch.int64).contiguous(),
                w_scale=ints["w_scale"][rows].clone(),
                w_bits=[plan.bits[c] for c in plan.order],
                b_int=ints["b_int"][rows].to(torch.int64),
                b_scale=ints["b_scale"][rows].clone(),
                channel_index=list(plan.order),
                in_index=in_index,
                in_a_bits=32 if iq is None else int(act_info(iq)["a_bits"]),
                in_scale=float(ints["s_a"]),
                module=plain_module(m, weight, bias),
            )
        )
    return out
