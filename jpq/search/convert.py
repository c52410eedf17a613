"""Conversion of a float ``nn.Module`` into a searchable network (algorithm.md §1).

1. Trace with ``torch.fx`` and propagate shapes on the input example.
2. Fold every BatchNorm into the Conv/Linear that feeds it (running statistics, §1.1).
3. Classify nodes: *features-defining* (graph input, standard Conv, Linear), *propagating* (ReLU, pooling,
   dropout, flatten, identity, depthwise conv, add). Cut the incoming edges of defining nodes; each
   weakly connected component is a **sharing group** (§1.4). Unsupported ops raise
   :class:`UnsupportedModelError` naming the node — never a silent skip.
4. Give every group with a Conv/Linear one :class:`GroupQuantizer`; the group containing the graph
   output cannot prune and keeps float outputs; the input gets its own quantizer (§1.5).
5. Replace Conv/Linear modules by searchable ones (same qualified names), re-quantize add outputs,
   rescale weights by ``1/(1-theta_0)`` (§3.3).
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from jpq.data.base import InputQuant
from jpq.errors import UnsupportedModelError
from jpq.search.layers import GroupAct, SearchConv, SearchLayer, SearchLinear
from jpq.search.net import LayerInfo, SearchableNet
from jpq.search.quantizers import ActQuantizer, GroupQuantizer
from jpq.search.sampler import SamplerState

_PASS_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Identity,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
)
_PASS_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.dropout,
    F.max_pool1d,
    F.max_pool2d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    torch.flatten,
}
_ADD_FUNCTIONS = {operator.add, torch.add, operator.iadd}
_PASS_METHODS = {"relu", "flatten", "view", "reshape", "contiguous"}
_SHAPE_METHODS = {"size", "dim"}
_FLATTENS = {torch.flatten, "flatten", "view", "reshape"}


@dataclass
class _Node:
    kind: str  # "input" | "layer" | "dw" | "add" | "pass" | "flatten" | "output" | "shape"


def _is_depthwise(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    )


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


def _classify(node: fx.Node, modules: dict[str, nn.Module]) -> _Node:
    if node.op == "placeholder":
        return _Node("input")
    if node.op == "output":
        return _Node("output")
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.Conv1d | nn.Conv2d):
            if _is_depthwise(m):
                return _Node("dw")
            if m.groups != 1:
                raise UnsupportedModelError(
                    f"node '{node.name}' ({node.target}): grouped convolution with groups={m.groups} is not "
                    "supported (only standard or depthwise convs)"
                )
            return _Node("layer")
        if isinstance(m, nn.Linear):
            return _Node("layer")
        if isinstance(m, nn.Flatten):
            return _Node("flatten")
        if isinstance(m, _PASS_MODULES):
            return _Node("pass")
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            raise UnsupportedModelError(f"node '{node.name}': BatchNorm left after folding")
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.target}): module {type(m).__name__} is not supported by the search"
        )
    if node.op == "call_function":
        if node.target in _ADD_FUNCTIONS:
            return _Node("add")
        if node.target is torch.flatten:
            return _Node("flatten")
        if node.target in _PASS_FUNCTIONS:
            return _Node("pass")
        if node.target is torch.cat:
            raise UnsupportedModelError(
                f"node '{node.name}': channel concatenation (torch.cat) is not supported yet"
            )
        name = getattr(node.target, "__name__", str(node.target))
        raise UnsupportedModelError(f"node '{node.name}': function {name} is not supported by the search")
    if node.op == "call_method":
        if node.target in _SHAPE_METHODS:
            return _Node("shape")
        if node.target in ("flatten", "view", "reshape"):
            return _Node("flatten")
        if node.target in _PASS_METHODS:
            return _Node("pass")
        raise UnsupportedModelError(f"node '{node.name}': method .{node.target}() is not supported")
    raise UnsupportedModelError(f"node '{node.name}': {node.op} {node.target} is not supported")


def _tensor_args(node: fx.Node, kinds: dict[fx.Node, _Node]) -> list[fx.Node]:
    out = []
    for a in node.all_input_nodes:
        if kinds[a].kind != "shape":
            out.append(a)
    return out


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[fx.Node, fx.Node] = {}

    def find(self, x: fx.Node) -> fx.Node:
        self.parent.setdefault(x, x)
        while self.parent[x] is not x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: fx.Node, b: fx.Node) -> None:
        self.parent[self.find(a)] = self.find(b)


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
    _fold_bn(gm)
    modules = dict(gm.named_modules())
    nodes = list(gm.graph.nodes)
    kinds = {n: _classify(n, modules) for n in nodes}

    # --- sharing groups (§1.4): cut incoming edges of defining nodes, union the rest -------------
    uf = _UnionFind()
    for n in nodes:
        if kinds[n].kind == "shape":
            continue
        uf.find(n)
        if kinds[n].kind in ("input", "layer"):
            continue
        for a in _tensor_args(n, kinds):
            uf.union(n, a)
    comps: dict[fx.Node, list[fx.Node]] = {}
    for n in nodes:
        if kinds[n].kind != "shape":
            comps.setdefault(uf.find(n), []).append(n)

    # --- channel source of every node: (group root or None, multiplier, constant channels) --------
    src: dict[fx.Node, tuple[fx.Node | None, int, int]] = {}
    for n in nodes:
        k = kinds[n].kind
        if k == "shape":
            continue
        if k == "input":
            src[n] = (None, 1, int(n.meta["tensor_meta"].shape[1]))
        elif k == "layer":
            src[n] = (uf.find(n), 1, 0)
        elif k == "output":
            continue
        else:
            ins = _tensor_args(n, kinds)
            if not ins:
                raise UnsupportedModelError(f"node '{n.name}' has no tensor input")
            g, mult, const = src[ins[0]]
            if k == "flatten":
                in_shape = ins[0].meta["tensor_meta"].shape
                out_shape = n.meta["tensor_meta"].shape
                if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
                    raise UnsupportedModelError(
                        f"node '{n.name}': only flattening to (batch, features) is supported"
                    )
                spatial = 1
                for d in in_shape[2:]:
                    spatial *= int(d)
                mult, const = mult * spatial, const * spatial
            src[n] = (g, mult, const)

    out_node = next(n for n in nodes if n.op == "output")
    out_root = uf.find(out_node)
    in_root = uf.find(placeholders[0])
    layer_nodes = [n for n in nodes if kinds[n].kind in ("layer", "dw")]
    if not layer_nodes:
        raise UnsupportedModelError("the model has no Conv/Linear layer to search")
    for n in comps[in_root]:
        if kinds[n].kind in ("layer", "dw", "add"):
            raise UnsupportedModelError(
                f"node '{n.name}' combines the network input with layer outputs; not supported"
            )

    # --- quantizers ------------------------------------------------------------------------------
    groups: list[GroupQuantizer] = []
    group_of_root: dict[fx.Node, GroupQuantizer] = {}
    for root, members in comps.items():
        defining = [n for n in members if kinds[n].kind == "layer"]
        if not defining:
            continue
        chans = {_out_channels(modules[n.target]) for n in defining}
        dws = [n for n in members if kinds[n].kind == "dw"]
        chans |= {_out_channels(modules[n.target]) for n in dws}
        if len(chans) != 1:
            names = ", ".join(n.name for n in defining + dws)
            raise UnsupportedModelError(f"layers {names} meet at an add but have different channel counts")
        is_out = root is out_root
        if pit:
            gw: tuple[int, ...] = (8,) if is_out else (0, 8)
        else:
            gw = tuple(b for b in w_bits if b != 0) if is_out else tuple(w_bits)
        if not gw:
            raise ValueError("the output layer needs at least one non-zero weight precision")
        g = GroupQuantizer(
            len(groups),
            chans.pop(),
            gw,
            None if is_out or pit else a_bits,
            state,
            per_layer=per_layer,
            keep_alive=keep_alive,
            clip=act_clip,
            members=[str(n.target) for n in members if kinds[n].kind in ("layer", "dw")],
            is_output=is_out,
            pit=pit,
        )
        groups.append(g)
        group_of_root[root] = g
    in_bits = tuple(iq.bits) if iq.bits is not None else tuple(a_bits)
    input_q = None if pit else ActQuantizer(in_bits, state, clip=iq.hi, signed=iq.signed, lo=iq.lo)

    def producer_quant(n: fx.Node) -> ActQuantizer | None:
        root = uf.find(n)
        if root is in_root:
            return input_q
        g = group_of_root.get(root)
        if g is None:
            raise UnsupportedModelError(f"node '{n.name}' reads a tensor no searched layer produces")
        return g.act

    # --- rewrite the graph ----------------------------------------------------------------------
    layers: list[LayerInfo] = []
    for n in layer_nodes:
        m = modules[n.target]
        root = uf.find(n)
        g = group_of_root[root]
        x_in = _tensor_args(n, kinds)[0]
        in_q = producer_quant(x_in)
        new: SearchLayer = SearchLinear(m, g, in_q) if isinstance(m, nn.Linear) else SearchConv(m, g, in_q)
        if rescale and not per_layer and sampler != "hard":
            with torch.no_grad():
                new.weight.mul_(g.init_rescale())
        _set_submodule(gm, str(n.target), new)
        s_root, mult, const = src[x_in]
        shape = n.meta["tensor_meta"].shape
        out_hw = (
            (1, 1)
            if isinstance(m, nn.Linear)
            else ((int(shape[2]), int(shape[3])) if len(shape) == 4 else (int(shape[2]), 1))
        )
        kernel = (
            (1, 1)
            if isinstance(m, nn.Linear)
            else ((m.kernel_size[0], m.kernel_size[1]) if len(m.kernel_size) == 2 else (m.kernel_size[0], 1))
        )
        layers.append(
            LayerInfo(
                name=str(n.target),
                op=new.op,
                kernel=kernel,
                out_hw=out_hw,
                c_in=int(m.in_features if isinstance(m, nn.Linear) else m.in_channels),
                c_out=_out_channels(m),
                group=g.index,
                in_group=None if s_root is None else group_of_root[s_root].index,
                in_mult=mult,
                in_const=const,
            )
        )

    graph = gm.graph
    for n in nodes:
        if kinds[n].kind == "add":
            g = group_of_root.get(uf.find(n))
            if g is None or g.act is None:
                continue
            name = f"jpq_add_act_{n.name}"
            gm.add_submodule(name, GroupAct(g))
            with graph.inserting_after(n):
                q = graph.call_module(name, (n,))
            n.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)
    ph = placeholders[0]
    if input_q is not None:
        gm.add_submodule("jpq_input_quant", input_q)
        with graph.inserting_after(ph):
            q = graph.call_module("jpq_input_quant", (ph,))
        ph.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)
    gm.add_submodule("jpq_groups", nn.ModuleList(groups))
    _drop_redundant_relus(gm)
    graph.lint()
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


def _out_channels(m: nn.Module) -> int:
    return int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)


def _set_submodule(gm: fx.GraphModule, target: str, new: nn.Module) -> None:
    parent_name, _, child = target.rpartition(".")
    parent = gm.get_submodule(parent_name) if parent_name else gm
    setattr(parent, child, new)
