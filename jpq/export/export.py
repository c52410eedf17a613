"""Export of a searched, fine-tuned network for deployment (docs/method.md §8 "Correct procedure").

For every sharing group ``g`` (§1.4) the channel precisions ``p*(c)`` (§3.5) give the permutation ``pi_g``:
the kept channels (``p* != 0``) sorted by precision, 8 then 4 then 2 bits, stable within a precision.
Every Conv/Linear of ``g`` (residual-add inputs, depthwise members) keeps rows ``W[pi_g]``; every consumer
of ``g`` keeps input columns ``W[:, pi_g]`` (expanded by ``H*W`` after a flatten: feature ``c*H*W + s``);
a depthwise conv keeps channels ``pi_g`` and ``groups = |pi_g|``. So each layer becomes one sub-layer per
precision (Fig. 3), and the deployed weight memory equals the eval-mode size cost (§5.2, §8 item 6).

``export_net`` writes into ``out_dir``:

* ``model.pt`` — the state_dict (tensors only, no pickled code) of the exported ``torch.fx.GraphModule``:
  plain ``nn.Conv2d``/``nn.Linear`` modules holding the fake-quantized (float) weights and biases, and
  small fixed :class:`Pact` modules for the activations (the classifier rows are reordered too, so an
  :class:`OutputOrder` gather restores the class order at the end); ``jpq.export.load.load_exported``
  rebuilds the module from the run and loads it;
* ``model.onnx`` — the same graph for onnxruntime (see :mod:`jpq.export.onnx`);
* ``weights.bin`` + ``manifest.json`` — integer weights bit-packed per precision sub-block
  (:mod:`jpq.export.pack`), per-channel scales, biases (``int32`` at ``s_b = s_a * s_w`` and float),
  shapes, byte offsets, activation bits and clips, and the node list of the graph;
* ``verify.json`` — the checks of :func:`verify_export` (also printed as a table).

Numerics. The exported model computes the same function as the discrete fake-quant network, but not bit
for bit in float32: it sums each convolution over fewer, reordered channels, and PACT's floor turns a
one-ulp difference at a quantization boundary into a whole activation step (on 512 random inputs of a
ResNet-8, ~1 % of the samples get a logit off by ~1e-4; on a large test set a prediction may flip). So the
correctness check repeats the export on a float64 copy of the network and compares both in float64
(differences ~1e-16); the float32 ``model.pt``/``model.onnx`` are reported with their prediction agreement
and max |dlogit| against the float32 fake-quant network.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, fx, nn

from jpq.errors import RunDirError, UnsupportedModelError
from jpq.export.pack import BIT_ORDER, BinWriter, int_range, read_array, read_packed
from jpq.io import atomic_torch_save, atomic_write_bytes, atomic_write_json
from jpq.quant import channel_scales
from jpq.quant.activations import PACT_EPS
from jpq.search import SearchableNet
from jpq.search.layers import GroupAct, SearchLayer, SearchLinear
from jpq.search.quantizers import ActQuantizer

#: ``format`` entry of ``export/model.pt``
MODEL_FORMAT = "jpq-export-model-1"
#: tolerance of the float64 correctness check (1e-4 on exported vs fake-quant logits, docs/method.md §8)
F64_ATOL = 1e-4
#: minimum float32 prediction agreement for a passing export (floor flips, module docstring)
MIN_AGREEMENT = 0.99
#: float32 |dlogit| below which a sample counts as numerically identical
CLOSE_ATOL = 1e-4
MANIFEST_VERSION = 1
_I32 = int_range(32)


# -- fixed modules of the exported graph ----------------------------------------------------------------
class Pact(nn.Module):
    """PACT at one precision with frozen clips (docs/method.md §2.2): the argmax branch of an ActQuantizer.

    ``y = floor(S * clamp(x, 0, clip)) / S`` with ``S = (2^a - 1) / (clip + 1e-3)``; signed when ``clip_lo``
    is given (``clamp(x, clip_lo, clip)``, ``S = (2^a - 1) / (clip - clip_lo + 1e-3)``). The float
    operations are those of :func:`jpq.quant.mixed_pact`, so the outputs match it bit for bit; ``S`` is
    computed in the forward pass so that a ``.double()`` copy stays consistent with the fake-quant network.
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
        if self.clip_lo is not None:
            scale = self.levels / (self.clip - self.clip_lo + PACT_EPS)
            xc = torch.clamp(x, self.clip_lo, self.clip)
        else:
            scale = self.levels / (self.clip + PACT_EPS)
            xc = torch.clamp(x, min=0.0).clamp(max=self.clip)
        return torch.floor(xc * scale) / scale

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


# -- the plan: permutations and exported tensors -----------------------------------------------------------
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


def _chosen_index(q: ActQuantizer) -> int:
    """The argmax branch a discretized ActQuantizer uses (torch.argmax: first maximum, §3.5)."""
    return 0 if len(q.bits) == 1 else int(torch.argmax(q.alpha.detach()))


def _act_module(q: ActQuantizer) -> Pact:
    j = _chosen_index(q)
    lo = None if q.clip_lo is None else q.clip_lo.detach()[j]
    return Pact(q.bits[j], q.clip_val.detach()[j], lo)


def _act_info(q: ActQuantizer) -> dict[str, Any]:
    """Bits, clips and both scales of a fixed PACT: the forward ``S`` and the bias scale ``s_a`` (§11.10)."""
    j = _chosen_index(q)
    a = q.bits[j]
    hi = float(q.clip_val.detach()[j])
    lo = None if q.clip_lo is None else float(q.clip_lo.detach()[j])
    span = hi - (lo or 0.0)
    hi_t = q.clip_val.detach()[j].float()
    span_t = hi_t if q.clip_lo is None else hi_t - q.clip_lo.detach()[j].float()
    pact_scale = float(torch.tensor(2.0**a - 1.0) / (span_t + PACT_EPS))  # S as the float32 forward has it
    return {
        "a_bits": a,
        "signed": lo is not None,
        "clip": hi,
        "clip_lo": lo,
        "pact_scale": pact_scale,
        "scale_bias": span / (2**a - 1),
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
        info = None if g.act is None else _act_info(g.act)
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


@torch.no_grad()
def export_layers(net: SearchableNet, plans: Sequence[GroupPlan]) -> list[ExportedLayer]:
    """Prune, permute and integerize every searched layer (§8 steps 3-4)."""
    mods = dict(net.net.named_modules())
    out = []
    for li in net.layers:
        m = mods[li.name]
        if not isinstance(m, SearchLayer):
            raise TypeError(f"{li.name} is not a searchable layer")
        g = m.group  # type: ignore[attr-defined]
        plan = plans[li.group]
        rows = torch.as_tensor(plan.order)
        w_q, b_q = m.quantized_params()  # exactly what the discrete fake-quant forward uses
        w = m.weight.detach()
        theta = g.theta()  # frozen one-hot (P, C)
        scales = (theta * channel_scales(w, g.bits_t).squeeze(-1)).sum(0)  # (C,) s_c(p*(c)), 0 if pruned
        iq: ActQuantizer | None = m.in_quant  # type: ignore[assignment]
        s_a = iq.expected_scale(iq.current_theta()) if iq is not None else torch.ones(())
        s_b = s_a * scales
        # integers: the same float ops as jpq.quant.quantize_all, so w_int * s == w_q exactly
        flat = w.reshape(w.shape[0], -1)
        bits_t = torch.as_tensor(plan.bits, dtype=w.dtype)
        upper = (2.0 ** (bits_t - 1.0) - 1.0).unsqueeze(1)
        safe = torch.where(scales > 0, scales, torch.ones_like(scales)).unsqueeze(1)
        w_int = torch.minimum(torch.round(flat / safe), upper).reshape(w.shape)
        zero = torch.isclose(s_b, torch.zeros_like(s_b))  # quantize_bias: b_q = 0 where s_b ~ 0
        b_int = torch.where(
            zero, torch.zeros_like(s_b), torch.round(m.bias.detach() / torch.where(zero, 1.0, s_b))
        )

        weight, ints = w_q[rows], w_int[rows]
        in_index = None
        if li.op == "dw":
            if li.in_group != li.group:
                raise UnsupportedModelError(f"depthwise layer {li.name} is not in the group of its input")
        elif li.in_group is not None:
            in_index = _expand(plans[li.in_group].order, li.in_mult)
            cols = torch.as_tensor(in_index)
            weight, ints = weight[:, cols], ints[:, cols]
        weight, bias = weight.contiguous().clone(), b_q[rows].clone()
        module = _plain_module(m, weight, bias)
        in_info = _act_info(iq) if iq is not None else {"a_bits": 32, "scale_bias": 1.0}
        out.append(
            ExportedLayer(
                name=li.name,
                op=li.op,
                group=li.group,
                in_group=li.in_group,
                weight=weight,
                bias=bias,
                w_int=ints.to(torch.int64).contiguous(),
                w_scale=scales[rows].clone(),
                w_bits=[plan.bits[c] for c in plan.order],
                b_int=b_int[rows].to(torch.int64),
                b_scale=s_b[rows].clone(),
                channel_index=list(plan.order),
                in_index=in_index,
                in_a_bits=int(in_info["a_bits"]),
                in_scale=float(s_a),
                module=module,
            )
        )
    return out


def _plain_module(m: SearchLayer, weight: Tensor, bias: Tensor) -> nn.Module:
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


# -- the plain graph --------------------------------------------------------------------------------------
def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def exported_model(net: SearchableNet) -> fx.GraphModule:
    """The plain exported network of a discretized net (plan, pruned layers, graph surgery)."""
    plans = plan_groups(net)
    return build_model(net, plans, export_layers(net, plans))


def build_model(
    net: SearchableNet, plans: Sequence[GroupPlan], layers: Sequence[ExportedLayer]
) -> fx.GraphModule:
    """The plain exported network: the search graph with every search module replaced (§8).

    SearchConv/SearchLinear -> plain Conv/Linear followed by the group's :class:`Pact` (none for the
    output group); the input quantizer and the add re-quantizers -> :class:`Pact`; reshapes to
    ``(batch, features)`` -> ``torch.flatten(x, 1)`` (their sizes changed); a final :class:`OutputOrder`
    when the classifier rows are not in class order.
    """
    old = net.net
    mods = dict(old.named_modules())
    by_name = {lay.name: lay for lay in layers}
    taken = set(mods)
    new_mods: dict[str, nn.Module] = {}
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    out_plan = next((p for p in plans if p.is_output), None)

    def arg(a: Any) -> Any:
        return fx.map_arg(a, lambda n: env[n])

    for n in old.graph.nodes:
        if n.op == "call_module":
            m = mods[n.target]
            if isinstance(m, SearchLayer):
                new_mods[n.target] = by_name[n.target].module
                y = graph.call_module(n.target, arg(n.args), arg(n.kwargs))
                act = m.group.act  # type: ignore[attr-defined]
                if act is not None:
                    name = _unique(f"{n.target}_act", taken)
                    new_mods[name] = _act_module(act)
                    y = graph.call_module(name, (y,))
                env[n] = y
                continue
            if isinstance(m, ActQuantizer):
                new_mods[n.target] = _act_module(m)
            elif isinstance(m, GroupAct):
                act = m.group.act  # type: ignore[attr-defined]
                new_mods[n.target] = nn.Identity() if act is None else _act_module(act)
            else:
                new_mods[n.target] = copy.deepcopy(m)
            env[n] = graph.node_copy(n, lambda a: env[a])
        elif n.op == "call_method" and n.target in ("view", "reshape"):
            env[n] = graph.call_function(torch.flatten, (env[n.args[0]], 1))
        elif n.op == "output":
            out = arg(n.args[0])
            if out_plan is not None and out_plan.order != sorted(out_plan.order):
                pos = {c: i for i, c in enumerate(out_plan.order)}
                name = _unique("output_order", taken)
                new_mods[name] = OutputOrder([pos[c] for c in range(out_plan.channels)])
                out = graph.call_module(name, (out,))
            graph.output(out)
        elif n.op == "get_attr":
            raise UnsupportedModelError(f"node {n.name}: get_attr is not supported by the export")
        else:
            env[n] = graph.node_copy(n, lambda a: env[a])
            if n.op == "placeholder":
                env[n].type = None  # a string annotation of the traced model would break pickling
    gm = fx.GraphModule(new_mods, graph, class_name="JpqExportedNet")
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return gm.eval()


# -- packed weights and manifest ---------------------------------------------------------------------------
def _graph_nodes(gm: fx.GraphModule) -> list[dict[str, Any]]:
    """The node list of the exported graph (topological order), for a runtime that rebuilds it."""
    mods = dict(gm.named_modules())
    nodes = []
    for n in gm.graph.nodes:
        entry: dict[str, Any] = {"name": n.name, "op": n.op, "inputs": [a.name for a in n.all_input_nodes]}
        if n.op == "call_module":
            m = mods[n.target]
            entry["target"] = str(n.target)
            entry["module"] = type(m).__name__
            entry["repr"] = repr(m)
        elif n.op in ("call_function", "call_method"):
            entry["target"] = getattr(n.target, "__name__", str(n.target))
            entry["args"] = [a.name if isinstance(a, fx.Node) else repr(a) for a in n.args]
        nodes.append(entry)
    return nodes


def _layer_geometry(lay: ExportedLayer) -> dict[str, Any]:
    m = lay.module
    if isinstance(m, nn.Linear):
        return {"in_features": m.in_features, "out_features": m.out_features}
    assert isinstance(m, nn.Conv1d | nn.Conv2d)
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
        "dilation": list(m.dilation),
        "groups": m.groups,
    }


def write_packed(
    net: SearchableNet, plans: Sequence[GroupPlan], layers: Sequence[ExportedLayer], gm: fx.GraphModule
) -> tuple[bytes, dict[str, Any]]:
    """``weights.bin`` content and the manifest describing it (layout in :mod:`jpq.export.pack`).

    The file starts with every packed weight sub-block (byte-aligned, in layer order), followed by the
    4-byte aligned float32/int32 arrays (per-row weight scales, int32 biases, their scales, float biases).
    """
    w = BinWriter()
    entries: list[dict[str, Any]] = []
    mods = dict(net.net.named_modules())
    for lay in layers:
        filt = list(lay.weight.shape[1:])
        subs = []
        for bits, start, stop in lay.blocks():
            ints = lay.w_int[start:stop].numpy()
            subs.append(
                {
                    "w_bits": bits,
                    "rows": [start, stop],
                    "shape": [stop - start, *filt],
                    "weights": w.add_packed(ints, bits),
                }
            )
        entries.append({"layer": lay, "subs": subs})
    weight_region = w.size
    out_layers = []
    for e in entries:
        lay: ExportedLayer = e["layer"]
        for sub, (_, start, stop) in zip(e["subs"], lay.blocks(), strict=True):
            sub["w_scale"] = w.add_array(lay.w_scale[start:stop].numpy(), "float32")
            sub["bias_int32"] = w.add_array(lay.b_int[start:stop].clamp(*_I32).numpy(), "int32")
            sub["bias_scale"] = w.add_array(lay.b_scale[start:stop].numpy(), "float32")
            sub["bias_float32"] = w.add_array(lay.bias[start:stop].numpy(), "float32")
        plan = plans[lay.group]
        m = mods[lay.name]
        in_q: ActQuantizer | None = m.in_quant  # type: ignore[attr-defined]
        out_layers.append(
            {
                "name": lay.name,
                "op": lay.op,
                "group": lay.group,
                "in_group": lay.in_group,
                "weight_shape": list(lay.weight.shape),
                **_layer_geometry(lay),
                "input_act": None if in_q is None else _act_info(in_q),
                "output_act": None if plan.is_output else _act_info(m.group.act),  # type: ignore[attr-defined]
                "channel_index": lay.channel_index,
                "input_index": lay.in_index,
                "weight_bits": sum(s["weights"]["nbits"] for s in e["subs"]),
                "weight_bytes": sum(s["weights"]["nbytes"] for s in e["subs"]),
                "padding_bits": sum(s["weights"]["padding_bits"] for s in e["subs"]),
                "bias_saturated": int((lay.b_int != lay.b_int.clamp(*_I32)).sum()),
                "sub_blocks": e["subs"],
            }
        )
    iq = _act_info(net.input_quant)
    out_plan = next((p for p in plans if p.is_output), None)
    ph = next(n for n in net.net.graph.nodes if n.op == "placeholder")
    shape = ph.meta.get("tensor_meta").shape if "tensor_meta" in ph.meta else None
    manifest = {
        "format": "jpq-packed-weights",
        "version": MANIFEST_VERSION,
        "weights_file": "weights.bin",
        "bit_order": BIT_ORDER,
        "byte_order": "little-endian; float32 and int32 arrays 4-byte aligned",
        "weight_semantics": "weight = w_int * w_scale[row] (symmetric per-channel min-max, §2.1)",
        "bias_semantics": (
            "bias_float32 = bias_int32 * bias_scale, bias_scale = input_act.scale_bias * w_scale "
            "(docs/method.md §2.3; bias_int32 saturates at the int32 range, see bias_saturated)"
        ),
        "activation_semantics": (
            "PACT: q = floor(clamp(x, clip_lo or 0, clip) * pact_scale), value = q / pact_scale, with "
            "pact_scale = (2^a_bits - 1) / (clip - clip_lo + 1e-3) in float32; scale_bias = (clip - clip_lo) "
            "/ (2^a_bits - 1) is the scale of the bias quantizer (docs/method.md §2.2, §11 item 10); "
            "output_act null = float logits"
        ),
        "channel_order": "kept output channels sorted by w_bits (8, 4, 2), stable; "
        "channel_index = original index",
        "input_shape": None if shape is None else list(shape[1:]),
        "input_act": iq,
        "output_order": None
        if out_plan is None or out_plan.order == sorted(out_plan.order)
        else [out_plan.order.index(c) for c in range(out_plan.channels)],
        "groups": [
            {
                "group": p.index,
                "members": list(p.members),
                "channels": p.channels,
                "kept": len(p.order),
                "order": p.order,
                "w_bits": p.sorted_bits,
                "a_bits": p.a_bits,
                "clip": p.clip,
            }
            for p in plans
        ],
        "layers": out_layers,
        "totals": {
            "weight_bits": sum(lay["weight_bits"] for lay in out_layers),
            "weight_bytes": sum(lay["weight_bytes"] for lay in out_layers),
            "padding_bits": sum(lay["padding_bits"] for lay in out_layers),
            "weight_region_bytes": weight_region,
            "file_bytes": w.size,
        },
        "graph": _graph_nodes(gm),
    }
    return w.getvalue(), manifest


def read_weights(export_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Read ``weights.bin`` back with ``manifest.json``: per layer the integer weights (exported shape),
    per-row bits, scales and biases (numpy arrays). The inverse of the packing, for tests and tools."""
    export_dir = Path(export_dir)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    blob = (export_dir / manifest["weights_file"]).read_bytes()
    out: dict[str, dict[str, Any]] = {}
    for lay in manifest["layers"]:
        ints, bits, parts = [], [], {k: [] for k in ("w_scale", "bias_int32", "bias_scale", "bias_float32")}
        for sub in lay["sub_blocks"]:
            ints.append(read_packed(blob, sub["weights"], sub["w_bits"]).reshape(sub["shape"]))
            bits += [sub["w_bits"]] * sub["shape"][0]
            for k in parts:
                parts[k].append(read_array(blob, sub[k]))
        out[lay["name"]] = {
            "w_int": np.concatenate(ints, axis=0),
            "w_bits": np.asarray(bits),
            **{k: np.concatenate(v) for k, v in parts.items()},
        }
    return out


# -- verification --------------------------------------------------------------------------------------------
@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]).float()


def _compare(ref: Tensor, out: Tensor) -> dict[str, float]:
    d = (ref.double() - out.double()).abs()
    per = d.amax(dim=1)
    return {
        "max_abs_dlogit": float(per.max()) if per.numel() else 0.0,
        "mean_abs_dlogit": float(d.mean()) if d.numel() else 0.0,
        "agreement": float((ref.argmax(1) == out.argmax(1)).double().mean()) if per.numel() else 1.0,
        "frac_close": float((per <= CLOSE_ATOL).double().mean()) if per.numel() else 1.0,
    }


def _accuracy(logits: Tensor, labels: Tensor | None) -> float | None:
    if labels is None:
        return None
    return 100.0 * float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def _random_inputs(net: SearchableNet, n: int, seed: int = 0) -> Tensor:
    """Inputs spanning the input quantizer's range, when the caller gives none."""
    ph = next(node for node in net.net.graph.nodes if node.op == "placeholder")
    if "tensor_meta" not in ph.meta:
        raise ValueError("export_net: pass example_inputs (the network has no recorded input shape)")
    shape = tuple(ph.meta["tensor_meta"].shape[1:])
    info = _act_info(net.input_quant)
    lo = info["clip_lo"] if info["clip_lo"] is not None else 0.0
    span = info["clip"] - lo
    g = torch.Generator().manual_seed(seed)
    return lo - 0.05 * span + 1.1 * span * torch.rand(n, *shape, generator=g)


def _double(net: SearchableNet) -> SearchableNet:
    """A float64 copy of the discrete fake-quant network (cached float32 thetas dropped)."""
    return copy.deepcopy(net).double().eval().discretize()


def verify_export(
    net: SearchableNet,
    model: nn.Module,
    onnx_path: Path | None,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    batch_size: int = 256,
    f64_samples: int | None = 256,
) -> dict[str, Any]:
    """Predictions of the exported model (PyTorch, ONNX) against the discrete fake-quant network.

    * ``torch_f64``: both networks in float64 on the first ``f64_samples`` inputs; must agree to
      ``F64_ATOL`` (the export computes the same function);
    * ``torch_f32`` / ``onnx_f32``: float32 on every input: max/mean |dlogit|, prediction agreement
      (must reach ``MIN_AGREEMENT``) and the fraction of samples within ``CLOSE_ATOL``.
    """
    x = x.detach().cpu().float()
    ref = _logits(net, x, batch_size)
    exp = _logits(model, x, batch_size)
    out: dict[str, Any] = {"samples": int(x.shape[0]), "torch_f32": _compare(ref, exp)}
    n64 = x.shape[0] if f64_samples is None else min(f64_samples, x.shape[0])
    if n64 > 0:
        x64 = x[:n64].double()
        with torch.no_grad():
            # the export procedure applied to a float64 copy: same weights on both sides, so the two
            # differ only by float64 summation order (no PACT floor flips, module docstring)
            dnet = _double(net)
            dplans = plan_groups(dnet)
            dmodel = build_model(dnet, dplans, export_layers(dnet, dplans))
            out["torch_f64"] = {**_compare(dnet(x64), dmodel(x64)), "samples": int(n64)}
    onnx_logits = None
    if onnx_path is not None:
        from jpq.export.onnx import onnx_predict

        onnx_logits = onnx_predict(onnx_path, x, batch_size=batch_size)
        out["onnx_f32"] = _compare(ref, onnx_logits)
    if labels is not None:
        out["accuracy"] = {
            "fake_quant": _accuracy(ref, labels),
            "torch": _accuracy(exp, labels),
            "onnx": _accuracy(onnx_logits, labels) if onnx_logits is not None else None,
        }
    return out


def _checks(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the verification table: check, measured value, criterion, pass/fail."""
    packed = rec["packed_weight_bits"]

    def row(check: str, value: str, criterion: str, ok: bool) -> dict[str, Any]:
        return {"check": check, "value": value, "criterion": criterion, "ok": bool(ok)}

    rows = [
        row(
            "weight bits vs size cost (§5.2)",
            f"{packed:,} / {rec['size_bits']:,.0f}",
            "equal",
            math.isclose(packed, rec["size_bits"], rel_tol=0, abs_tol=0.5),
        )
    ]
    if rec.get("size_bits_run") is not None:
        rows.append(
            row(
                "weight bits vs run size_bits",
                f"{packed:,} / {rec['size_bits_run']:,.0f}",
                "equal",
                math.isclose(packed, rec["size_bits_run"], rel_tol=0, abs_tol=0.5),
            )
        )
    rows.append(
        row("unpack(pack) and int*scale", f"{rec['roundtrip_max_abs_err']:.3g}", "exact", rec["roundtrip_ok"])
    )
    rows.append(row("int32 biases saturated", str(rec["bias_saturated"]), "0", rec["bias_saturated"] == 0))
    rows.append(
        row("kept channel counts (§8)", "match" if rec["kept_ok"] else "differ", "match", rec["kept_ok"])
    )
    p = rec.get("predictions")
    if p:
        if "torch_f64" in p:
            f64 = p["torch_f64"]
            rows.append(
                row(
                    f"PyTorch f64 max|dlogit| ({f64['samples']})",
                    f"{f64['max_abs_dlogit']:.3g}",
                    f"<= {F64_ATOL:g}",
                    f64["max_abs_dlogit"] <= F64_ATOL,
                )
            )
        for key, label in (("torch_f32", "PyTorch"), ("onnx_f32", "ONNX")):
            if key in p:
                c = p[key]
                rows.append(
                    row(
                        f"{label} f32 agreement ({p['samples']})",
                        f"{c['agreement']:.2%} (max {c['max_abs_dlogit']:.2g})",
                        f">= {MIN_AGREEMENT:.0%}",
                        c["agreement"] >= MIN_AGREEMENT,
                    )
                )
    return rows


def _print(rec: dict[str, Any], console: Console | None) -> None:
    con = console or Console(stderr=True)
    lt = Table(title=f"export {rec['export_dir']}")
    for col in ("layer", "op", "kept", "w8/w4/w2", "weight bits", "bytes", "pad bits"):
        lt.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for lay in rec["layers"]:
        c = lay["rows_per_bits"]
        lt.add_row(
            lay["name"],
            lay["op"],
            f"{lay['kept']}/{lay['c_out']}",
            f"{c.get('8', 0)}/{c.get('4', 0)}/{c.get('2', 0)}",
            f"{lay['weight_bits']:,}",
            f"{lay['weight_bytes']:,}",
            str(lay["padding_bits"]),
        )
    con.print(lt)
    vt = Table(title="verification")
    for col in ("check", "value", "criterion", "status"):
        vt.add_column(col, justify="left" if col == "check" else "right")
    for r in rec["checks"]:
        vt.add_row(r["check"], r["value"], r["criterion"], "[green]ok[/]" if r["ok"] else "[red]FAIL[/]")
    con.print(vt)
    acc = (rec.get("predictions") or {}).get("accuracy")
    if acc:
        con.print("accuracy %: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if v is not None))


# -- entry points -------------------------------------------------------------------------------------------
def export_net(
    net: SearchableNet,
    out_dir: str | Path,
    *,
    example_inputs: Tensor | None = None,
    labels: Tensor | None = None,
    verify: bool = True,
    console: Console | None = None,
    size_bits_run: float | None = None,
    onnx: bool = True,
    batch_size: int = 256,
    f64_samples: int | None = 256,
) -> dict[str, Any]:
    """Export a discretized :class:`SearchableNet` into ``out_dir`` (see the module docstring).

    Args:
        net: the fine-tuned network after ``discretize()``; it is put in eval mode (a CUDA network is
            copied to the CPU first).
        example_inputs, labels: verification data (e.g. the test split); without inputs, 16 random
            inputs in the input quantizer's range are used (they also trace the ONNX export).
        verify: compare predictions (float64 check, float32 PyTorch and ONNX agreement); the packing,
            size and channel-count checks always run.
        size_bits_run: the run's reported ``size_bits`` (result.json), checked against the packed bits.
        onnx: write and check ``model.onnx``.
        f64_samples: how many inputs the float64 check uses (0 skips it; None = all).

    Returns the record also written to ``verify.json`` (``ok`` is True when every check passes).
    """
    if not net.discrete:
        raise ValueError("export_net needs a discretized network (call net.discretize() after the search)")
    from jpq.cost import evaluate_all

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = next(net.parameters()).device
    if dev.type != "cpu":
        net = copy.deepcopy(net).cpu()
    net.eval()
    with torch.no_grad():
        plans = plan_groups(net)
        layers = export_layers(net, plans)
        model = build_model(net, plans, layers)
        blob, manifest = write_packed(net, plans, layers, model)
        size_bits = evaluate_all(net.layer_specs(fresh=True))["size_bits"]
    atomic_torch_save(out_dir / "model.pt", {"format": MODEL_FORMAT, "state_dict": model.state_dict()})
    atomic_write_bytes(out_dir / "weights.bin", blob)
    atomic_write_json(out_dir / "manifest.json", manifest)
    x = example_inputs if example_inputs is not None else _random_inputs(net, 16)
    onnx_path = None
    if onnx:
        from jpq.export.onnx import export_onnx

        onnx_path = export_onnx(model, x[:2].float().cpu(), out_dir / "model.onnx")

    # packing round trip and integer consistency
    back = read_weights(out_dir)
    err = 0.0
    rt_ok = True
    for lay in layers:
        b = back[lay.name]
        rt_ok &= bool(np.array_equal(b["w_int"], lay.w_int.numpy()))
        rt_ok &= list(b["w_bits"]) == lay.w_bits
        shape = (-1,) + (1,) * (lay.weight.dim() - 1)
        deq = torch.from_numpy(b["w_int"]).float() * torch.from_numpy(b["w_scale"]).view(shape)
        err = max(err, float((deq - lay.weight).abs().max()))
    rt_ok &= err == 0.0
    arch = net.arch()
    kept_ok = _kept_ok(net, plans, model)
    rec: dict[str, Any] = {
        "export_dir": str(out_dir),
        "files": ["model.pt", "weights.bin", "manifest.json", "verify.json"]
        + (["model.onnx"] if onnx else []),
        "model_format": "state_dict of the exported torch.fx.GraphModule: jpq.export.load.load_exported",
        "onnx_format": "float32 initializers (fake-quantized values), PACT as Clip/Mul/Floor/Div; opset 17",
        "size_bits": size_bits,
        "size_bits_run": size_bits_run,
        "packed_weight_bits": manifest["totals"]["weight_bits"],
        "packed_weight_bytes_exact": manifest["totals"]["weight_bits"] / 8,
        "packed_weight_bytes": manifest["totals"]["weight_bytes"],
        "padding_bits": manifest["totals"]["padding_bits"],
        "weights_bin_bytes": manifest["totals"]["file_bytes"],
        "roundtrip_ok": bool(rt_ok),
        "roundtrip_max_abs_err": err,
        "bias_saturated": sum(lay["bias_saturated"] for lay in manifest["layers"]),
        "kept_ok": kept_ok,
        "layers": [
            {
                "name": m["name"],
                "op": m["op"],
                "group": m["group"],
                "kept": m["weight_shape"][0],
                "c_out": arch["groups"][m["group"]]["channels"],
                "weight_shape": m["weight_shape"],
                "rows_per_bits": {str(s["w_bits"]): s["shape"][0] for s in m["sub_blocks"]},
                "weight_bits": m["weight_bits"],
                "weight_bytes": m["weight_bytes"],
                "padding_bits": m["padding_bits"],
            }
            for m in manifest["layers"]
        ],
        "predictions": None,
    }
    if verify:
        rec["predictions"] = verify_export(
            net, model, onnx_path, x, labels, batch_size=batch_size, f64_samples=f64_samples
        )
    rec["checks"] = _checks(rec)
    rec["ok"] = all(r["ok"] for r in rec["checks"])
    atomic_write_json(out_dir / "verify.json", rec)
    _print(rec, console)
    return rec


def _kept_ok(net: SearchableNet, plans: Sequence[GroupPlan], model: fx.GraphModule) -> bool:
    """Every exported Conv/Linear has exactly the kept channel counts of the arch (§8 steps 3-4)."""
    mods = dict(model.named_modules())
    for li in net.layers:
        m = mods[li.name]
        kept = len(plans[li.group].order)
        kept_in = li.in_const if li.in_group is None else len(plans[li.in_group].order) * li.in_mult
        if isinstance(m, nn.Linear):
            ok = m.out_features == kept and m.in_features == kept_in
        else:
            assert isinstance(m, nn.Conv1d | nn.Conv2d)
            ok = m.out_channels == kept and m.in_channels == kept_in
            ok &= m.groups == (kept if li.op == "dw" else 1)
        if not ok:
            return False
    return True


def _resolve_data_dir(cfg: Any, run_dir: Path) -> str:
    """``cfg.data_dir`` as an absolute path: relative paths are taken from the run's working directory
    (Hydra's ``.hydra/hydra.yaml`` records it), else from the current one."""
    from omegaconf import OmegaConf

    data_dir = Path(str(cfg.data_dir)).expanduser()
    if data_dir.is_absolute():
        return str(data_dir)
    hy = run_dir / ".hydra" / "hydra.yaml"
    if hy.is_file():
        try:
            cwd = OmegaConf.load(hy).hydra.runtime.cwd
            cand = Path(str(cwd)) / data_dir
            if cand.exists():
                return str(cand)
        except Exception:  # noqa: BLE001 - an unreadable hydra.yaml only loses the hint
            pass
    return str(data_dir.resolve())


def read_result(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/result.json``; :class:`RunDirError` when it is unreadable."""
    try:
        return json.loads((Path(run_dir) / "result.json").read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{run_dir}/result.json is unreadable: {e}") from e


def load_test_split(cfg: Any, run_dir: Path, max_samples: int | None) -> tuple[Tensor, Tensor]:
    """The run's test inputs and labels (at most ``max_samples``), read from its data folder without a
    download or progress bars."""
    from jpq.pipeline import load_data

    cfg.data_dir = _resolve_data_dir(cfg, run_dir)
    if "download" in cfg.dataset:
        cfg.dataset.download = False
    cfg.progress = False
    data = load_data(cfg)
    x, y = data.test.x, data.test.y
    return (x, y) if max_samples is None else (x[:max_samples], y[:max_samples])


def export_run(
    run_dir: str | Path,
    *,
    verify: bool = True,
    console: Console | None = None,
    max_samples: int | None = None,
    onnx: bool = True,
) -> dict[str, Any]:
    """Export the fine-tuned network of a finished run into ``RUN_DIR/export/`` (what ``jpq export`` runs).

    Verification uses the run's test split (``max_samples`` caps it) and compares the packed size with the
    run's ``result.json``. Raises :class:`RunDirError` for a folder without a finished fine-tune or with a
    corrupt checkpoint.
    """
    from jpq.export.load import load_run, run_config

    run_dir = Path(run_dir)
    net = load_run(run_dir)
    cfg = run_config(run_dir)
    result = read_result(run_dir)
    x, y = load_test_split(cfg, run_dir, max_samples) if verify else (None, None)
    return export_net(
        net,
        run_dir / "export",
        example_inputs=x,
        labels=y,
        verify=verify,
        console=console,
        size_bits_run=result.get("size_bits"),
        onnx=onnx,
    )
