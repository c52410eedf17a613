"""``weights.bin`` and ``manifest.json`` of an export (docs/method.md §8, deployment).

``weights.bin`` starts with every packed weight sub-block (byte-aligned, in layer order; bit layout in
:mod:`jpq.export.pack`), followed by the 4-byte aligned float32/int32 arrays of every sub-block (per-row
weight scales, int32 biases, their scales, float biases). ``manifest.json`` gives their offsets, the
shapes and geometry of the layers, activation bits and clips, the channel orders and the node list of the
exported graph, so that a runtime can rebuild the network without jpq.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import fx, nn

from jpq.export.pack import BIT_ORDER, BinWriter, int_range, read_array, read_packed
from jpq.export.plan import ExportedLayer, GroupPlan, act_info
from jpq.search import SearchableNet
from jpq.search.quantizers import ActQuantizer

MANIFEST_VERSION = 1
_I32 = int_range(32)
#: the fixed text of the manifest: what its numbers mean
_SEMANTICS = {
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
}


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


def _pack_weights(w: BinWriter, lay: ExportedLayer) -> list[dict[str, Any]]:
    """The packed weight sub-blocks of one layer, one per precision (the weight region of the file)."""
    filt = list(lay.weight.shape[1:])
    return [
        {
            "w_bits": bits,
            "rows": [start, stop],
            "shape": [stop - start, *filt],
            "weights": w.add_packed(lay.w_int[start:stop].numpy(), bits),
        }
        for bits, start, stop in lay.blocks()
    ]


def _add_arrays(w: BinWriter, lay: ExportedLayer, subs: list[dict[str, Any]]) -> None:
    """Append the per-row scales and biases of every sub-block of ``lay`` (the array region)."""
    for sub, (_, start, stop) in zip(subs, lay.blocks(), strict=True):
        sub["w_scale"] = w.add_array(lay.w_scale[start:stop].numpy(), "float32")
        sub["bias_int32"] = w.add_array(lay.b_int[start:stop].clamp(*_I32).numpy(), "int32")
        sub["bias_scale"] = w.add_array(lay.b_scale[start:stop].numpy(), "float32")
        sub["bias_float32"] = w.add_array(lay.bias[start:stop].numpy(), "float32")


def _layer_entry(
    lay: ExportedLayer, m: nn.Module, plan: GroupPlan, subs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The manifest entry of one layer: shapes, geometry, activations, channel orders, bit counts."""
    in_q: ActQuantizer | None = m.in_quant  # type: ignore[assignment]
    return {
        "name": lay.name,
        "op": lay.op,
        "group": lay.group,
        "in_group": lay.in_group,
        "weight_shape": list(lay.weight.shape),
        **_layer_geometry(lay),
        "input_act": None if in_q is None else act_info(in_q),
        "output_act": None if plan.is_output else act_info(m.group.act),  # type: ignore[attr-defined]
        "channel_index": lay.channel_index,
        "input_index": lay.in_index,
        "weight_bits": sum(s["weights"]["nbits"] for s in subs),
        "weight_bytes": sum(s["weights"]["nbytes"] for s in subs),
        "padding_bits": sum(s["weights"]["padding_bits"] for s in subs),
        "bias_saturated": int((lay.b_int != lay.b_int.clamp(*_I32)).sum()),
        "sub_blocks": subs,
    }


def _group_entry(p: GroupPlan) -> dict[str, Any]:
    return {
        "group": p.index,
        "members": list(p.members),
        "channels": p.channels,
        "kept": len(p.order),
        "order": p.order,
        "w_bits": p.sorted_bits,
        "a_bits": p.a_bits,
        "clip": p.clip,
    }


def _network_entries(net: SearchableNet, plans: Sequence[GroupPlan]) -> dict[str, Any]:
    """Input shape and quantizer, and the class order of the logits (None when unchanged)."""
    out_plan = next((p for p in plans if p.is_output), None)
    ph = next(n for n in net.net.graph.nodes if n.op == "placeholder")
    shape = ph.meta.get("tensor_meta").shape if "tensor_meta" in ph.meta else None
    return {
        "input_shape": None if shape is None else list(shape[1:]),
        "input_act": act_info(net.input_quant),
        "output_order": None
        if out_plan is None or out_plan.order == sorted(out_plan.order)
        else [out_plan.order.index(c) for c in range(out_plan.channels)],
    }


def write_packed(
    net: SearchableNet, plans: Sequence[GroupPlan], layers: Sequence[ExportedLayer], gm: fx.GraphModule
) -> tuple[bytes, dict[str, Any]]:
    """``weights.bin`` content and the manifest describing it (layout in the module docstring)."""
    w = BinWriter()
    subs = [_pack_weights(w, lay) for lay in layers]
    weight_region = w.size
    mods = dict(net.net.named_modules())
    out_layers = []
    for lay, lay_subs in zip(layers, subs, strict=True):
        _add_arrays(w, lay, lay_subs)
        out_layers.append(_layer_entry(lay, mods[lay.name], plans[lay.group], lay_subs))
    manifest = {
        **_SEMANTICS,
        **_network_entries(net, plans),
        "groups": [_group_entry(p) for p in plans],
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
