"""Conversion of a float ``nn.Module`` into a searchable network (docs/method.md §1).

:func:`convert` runs these steps in order:

1. :func:`_trace` - trace with ``torch.fx`` and propagate shapes on the input example;
2. :func:`_fold_bn` - fold every BatchNorm into the Conv/Linear that feeds it (running statistics, §1.1);
3. :func:`jpq.search.groups.sharing_groups` - classify the nodes, build the sharing groups (§1.4) and the
   channel source of every node; unsupported ops raise :class:`UnsupportedModelError` naming the node;
4. :func:`_group_quantizers` - one :class:`GroupQuantizer` per group with a Conv/Linear (the group holding
   the graph output cannot prune and keeps float outputs), and the input quantizer (§1.5); a PIT search
   gets a :class:`~jpq.search.pit_gate.PitGate` per group instead, and no quantizer (§7);
5. :func:`_replace_layers` - put searchable layers in place of the Conv/Linear modules (same qualified
   names), weights rescaled by ``1/(1-theta_0)`` (§3.3), and describe each layer for the cost models;
6. :func:`_insert_act_quantizers` - re-quantize add outputs and the network input, then drop the ReLUs
   the unsigned quantizers make redundant (:func:`_drop_redundant_relus`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from jpq.data.base import InputQuant
from jpq.errors import UnsupportedModelError
from jpq.search.groups import SharingGroups, out_channels, sharing_groups
from jpq.search.layers import GroupAct, SearchConv, SearchLayer, SearchLinear
from jpq.search.net import LayerInfo, SearchableNet
from jpq.search.pit_gate import PitConv, PitGate, PitLinear
from jpq.search.quantizers import ActQuantizer, ChannelGate, GroupQuantizer
from jpq.search.sampler import SamplerState


def _trace(model: nn.Module, input_example: Tensor) -> tuple[fx.GraphModule, Tensor]:
    """Trace a CPU copy of ``model`` (single input) and propagate shapes on ``input_example``; returns the
    graph module and the example on the CPU."""
    model = copy.deepcopy(model).cpu().eval()
    try:
        gm = fx.symbolic_trace(model)
    except Exception as e:  # noqa: BLE001 - tracing errors come in many types
        raise UnsupportedModelError(f"torch.fx cannot trace the model: {e}") from e
    example = input_example.detach().cpu()
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise UnsupportedModelError(f"the model must take exactly one input, it takes {len(placeholders)}")
    try:
        ShapeProp(gm).propagate(example)
    except Exception as e:  # noqa: BLE001
        raise UnsupportedModelError(
            f"input example of shape {tuple(example.shape)} does not fit the model: {e}"
        ) from e
    return gm, example


def _fold_bn(gm: fx.GraphModule) -> None:
    """Fold BatchNorm into the preceding Conv/Linear (s = gamma/sqrt(var+eps), §1.1)."""
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm1d | nn.BatchNorm2d):
            continue
        src = node.args[0]
        prod = modules.get(src.target) if isinstance(src, fx.Node) and src.op == "call_module" else None
        if not isinstance(prod, nn.Conv1d | nn.Conv2d | nn.Linear) or len(src.users) != 1:
            raise UnsupportedModelError(
                f"BatchNorm node '{node.name}' cannot be folded: its input must be a Conv/Linear used only "
                "by this BatchNorm"
            )
        bn = modules[node.target]
        if bn.running_mean is None or bn.running_var is None:
            raise UnsupportedModelError(f"BatchNorm node '{node.name}' has no running statistics to fold")
        with torch.no_grad():
            s = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
                bn.running_var + bn.eps
            )
            beta = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            b = prod.bias if prod.bias is not None else torch.zeros_like(bn.running_mean)
            shape = (-1,) + (1,) * (prod.weight.dim() - 1)
            prod.weight.copy_(prod.weight * s.view(shape))
            new_b = (b - bn.running_mean) * s + beta
            prod.bias = nn.Parameter(new_b.clone())
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        gm.delete_submodule(node.target)
    gm.graph.lint()
    gm.recompile()


def _group_quantizers(
    found: SharingGroups,
    modules: dict[str, nn.Module],
    state: SamplerState,
    *,
    w_bits: Sequence[int],
    a_bits: Sequence[int],
    per_layer: bool,
    keep_alive: bool,
    clip: float,
    pit: bool,
) -> dict[fx.Node, ChannelGate]:
    """One :class:`GroupQuantizer` per sharing group that holds a Conv/Linear, keyed by the group root,
    indexed in graph order. The output group searches ``w_bits`` without 0 and keeps float outputs
    (§1.4 item 6); ``per_layer``, ``keep_alive`` and ``clip`` go to every group. With ``pit`` every group
    gets a :class:`PitGate` instead (the output group's cannot prune)."""
    group_of_root: dict[fx.Node, ChannelGate] = {}
    for root, members in found.members.items():
        defining = [n for n in members if found.kinds[n] == "layer"]
        if not defining:
            continue
        dws = [n for n in members if found.kinds[n] == "dw"]
        chans = {out_channels(modules[n.target]) for n in defining + dws}
        if len(chans) != 1:
            names = ", ".join(n.name for n in defining + dws)
            raise UnsupportedModelError(f"layers {names} meet at an add but have different channel counts")
        is_out = root is found.output_root
        names = [str(n.target) for n in members if found.kinds[n] in ("layer", "dw")]
        if pit:
            group_of_root[root] = PitGate(
                len(group_of_root), chans.pop(), state, members=names, is_output=is_out
            )
            continue
        gw = tuple(b for b in w_bits if b != 0) if is_out else tuple(w_bits)
        if not gw:
            raise ValueError("the output layer needs at least one non-zero weight precision")
        group_of_root[root] = GroupQuantizer(
            len(group_of_root),
            chans.pop(),
            gw,
            None if is_out else a_bits,
            state,
            per_layer=per_layer,
            keep_alive=keep_alive,
            clip=clip,
            members=names,
            is_output=is_out,
        )
    return group_of_root


def _producer_quant(
    found: SharingGroups,
    n: fx.Node,
    group_of_root: dict[fx.Node, ChannelGate],
    input_q: ActQuantizer | None,
) -> ActQuantizer | None:
    """The activation quantizer of the tensor ``n`` produces: the input quantizer or its group's."""
    root = found.root(n)
    if root is found.input_root:
        return input_q
    g = group_of_root.get(root)
    if g is None:
        raise UnsupportedModelError(f"node '{n.name}' reads a tensor no searched layer produces")
    return g.act


def _layer_info(
    found: SharingGroups,
    n: fx.Node,
    m: nn.Module,
    new: SearchLayer,
    group_of_root: dict[fx.Node, ChannelGate],
) -> LayerInfo:
    """What the cost models need of the layer at node ``n`` (float module ``m``, searchable ``new``)."""
    s_root, mult, const = found.sources[found.tensor_args(n)[0]]
    linear = isinstance(m, nn.Linear)
    shape = n.meta["tensor_meta"].shape
    out_hw = (1, 1) if linear else ((int(shape[2]), int(shape[3])) if len(shape) == 4 else (int(shape[2]), 1))
    kernel = (
        (1, 1)
        if linear
        else ((m.kernel_size[0], m.kernel_size[1]) if len(m.kernel_size) == 2 else (m.kernel_size[0], 1))
    )
    return LayerInfo(
        name=str(n.target),
        op=new.op,
        kernel=kernel,
        out_hw=out_hw,
        c_in=int(m.in_features if linear else m.in_channels),
        c_out=out_channels(m),
        group=group_of_root[found.root(n)].index,
        in_group=None if s_root is None else group_of_root[s_root].index,
        in_mult=mult,
        in_const=const,
    )


def _replace_layers(
    gm: fx.GraphModule,
    found: SharingGroups,
    modules: dict[str, nn.Module],
    group_of_root: dict[fx.Node, ChannelGate],
    input_q: ActQuantizer | None,
    rescale: bool,
) -> list[LayerInfo]:
    """Swap every Conv/Linear for its searchable version (same qualified name), reading the quantizer of
    the tensor it consumes; ``rescale`` multiplies the weights by the group's initial rescale (§3.3)."""
    layers: list[LayerInfo] = []
    for n in found.layer_nodes():
        m = modules[n.target]
        g = group_of_root[found.root(n)]
        in_q = _producer_quant(found, found.tensor_args(n)[0], group_of_root, input_q)
        pit = isinstance(g, PitGate)
        if isinstance(m, nn.Linear):
            new: SearchLayer = (PitLinear if pit else SearchLinear)(m, g, in_q)
        else:
            new = (PitConv if pit else SearchConv)(m, g, in_q)
        if rescale:
            with torch.no_grad():
                new.weight.mul_(g.init_rescale())
        _set_submodule(gm, str(n.target), new)
        layers.append(_layer_info(found, n, m, new, group_of_root))
    return layers


def _insert_act_quantizers(
    gm: fx.GraphModule,
    found: SharingGroups,
    group_of_root: dict[fx.Node, ChannelGate],
    input_q: ActQuantizer | None,
) -> None:
    """Re-quantize every add output with its group's activation quantizer (§1.4 item 5) and the
    network input with ``input_q`` (§1.5), each as a module inserted after the node."""
    graph = gm.graph
    for n in found.nodes:
        if found.kinds[n] == "add":
            g = group_of_root.get(found.root(n))
            if g is None or g.act is None:
                continue
            name = f"jpq_add_act_{n.name}"
            gm.add_submodule(name, GroupAct(g))
            with graph.inserting_after(n):
                q = graph.call_module(name, (n,))
            n.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)
    ph = next(n for n in found.nodes if n.op == "placeholder")
    if input_q is not None:
        gm.add_submodule("jpq_input_quant", input_q)
        with graph.inserting_after(ph):
            q = graph.call_module("jpq_input_quant", (ph,))
        ph.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)


def convert(
    model: nn.Module,
    input_example: Tensor,
    *,
    w_bits: Sequence[int] = (0, 2, 4, 8),
    a_bits: Sequence[int] = (8,),
    sampler: str = "softmax",
    gumbel_hard: bool = False,
    temperature: float = 1.0,
    per_layer: bool = False,
    input_quant: InputQuant | None = None,
    keep_alive: bool = True,
    act_clip: float = 6.0,
    rescale: bool = True,
    pit: bool = False,
    fused: bool = False,
) -> SearchableNet:
    """Build a :class:`SearchableNet` from a float model (usable from Python without Hydra).

    Args:
        model: float seed network (not modified; a deep copy is converted).
        input_example: a batch ``(N, *input_shape)`` used for tracing shapes.
        w_bits: weight precisions, 0 = pruned (the output group drops 0, §1.4 item 6).
        a_bits: activation precisions searched per group.
        sampler: ``softmax`` | ``gumbel`` | ``hard`` (§3.2); ``gumbel_hard`` for straight-through Gumbel.
        per_layer: one precision per layer instead of per channel (EdMIPS-like, §1.2).
        input_quant: network-input quantizer (§1.5); unsigned PACT clip 1.0 by default.
        keep_alive: keep at least one channel in every group at the argmax (§11 item 5).
        rescale: divide weights by ``sum_{p != 0} theta_init`` (§3.3) for per-channel soft sampling.
        pit: PIT float channel pruning instead (§7): per-channel mask logits, float weights, no
            activation or input quantizers; ``w_bits``/``a_bits``/``sampler`` are then unused.
        fused: run the quantizers' compiled one-pass kernels (``trainer.search_step=fused``); same values
            as the eager ones (see :mod:`jpq.quant.fused`).
    """
    iq = input_quant or InputQuant()
    state = SamplerState(sampler, float(temperature), gumbel_hard, fused)
    gm, example = _trace(model, input_example)
    _fold_bn(gm)
    modules = dict(gm.named_modules())
    found = sharing_groups(gm, modules)
    group_of_root = _group_quantizers(
        found, modules, state, w_bits=w_bits, a_bits=a_bits, per_layer=per_layer, keep_alive=keep_alive,
        clip=act_clip, pit=pit,
    )
    groups = list(group_of_root.values())
    in_bits = tuple(iq.bits) if iq.bits is not None else tuple(a_bits)
    input_q = None if pit else ActQuantizer(in_bits, state, clip=iq.hi, signed=iq.signed, lo=iq.lo)
    rescale_weights = rescale and not per_layer and sampler != "hard"
    layers = _replace_layers(gm, found, modules, group_of_root, input_q, rescale_weights)
    _insert_act_quantizers(gm, found, group_of_root, input_q)
    gm.add_submodule("jpq_groups", nn.ModuleList(groups))
    _drop_redundant_relus(gm)
    gm.graph.lint()
    gm.recompile()
    net = SearchableNet(gm, groups, input_q, layers, state)
    with torch.no_grad():
        out = net.eval()(example)
    if out.dim() != 2:
        raise UnsupportedModelError(f"the model output must be (batch, classes), got {tuple(out.shape)}")
    return net


def _drop_redundant_relus(gm: fx.GraphModule) -> None:
    """Remove ReLUs applied to an unsigned-PACT output: PACT already maps to [0, clip], so ReLU is the
    identity there (§2.2: with BN folded, the quantizer acts as the ReLU). Saves a pass each way."""
    mods = dict(gm.named_modules())
    for n in list(gm.graph.nodes):
        is_relu = (
            (n.op == "call_module" and isinstance(mods.get(n.target), nn.ReLU))
            or (n.op == "call_function" and n.target in (F.relu, torch.relu))
            or (n.op == "call_method" and n.target == "relu")
        )
        if not is_relu or not n.args or not isinstance(n.args[0], fx.Node):
            continue
        src = n.args[0]
        m = mods.get(src.target) if src.op == "call_module" else None
        unsigned = (
            (isinstance(m, SearchLayer | GroupAct) and m.group.act is not None)  # type: ignore[union-attr]
            or (isinstance(m, ActQuantizer) and not m.signed)
        )
        if unsigned:
            n.replace_all_uses_with(src)
            gm.graph.erase_node(n)


def _set_submodule(gm: fx.GraphModule, target: str, new: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, child, new)
