"""Sharing groups and channel sources of a traced float network (docs/method.md §1.4).

Every node of the ``torch.fx`` graph gets a kind. *Features-defining* nodes (the graph input, a standard
Conv, a Linear) start a new set of channels; *propagating* nodes (ReLU, pooling, dropout, flatten,
identity, depthwise conv, add) keep the channels of their input; shape queries (``.size()``, ``.dim()``)
carry no tensor. Cutting the incoming edges of the defining nodes leaves weakly connected components:
the **sharing groups**, whose members must keep (or prune) the same output channels. An op the search
does not support raises :class:`UnsupportedModelError` naming the node, never a silent skip.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from jpq.errors import UnsupportedModelError

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

#: node kinds: "input" | "layer" (standard Conv, Linear) | "dw" (depthwise conv) | "add" | "pass" |
#: "flatten" | "output" | "shape" (a shape query, no tensor)
SEARCHED_KINDS = ("layer", "dw")


class ChannelSource(NamedTuple):
    """Where the channels of a node's output come from: the sharing group that produces them (None for
    the network input), how many features each of its channels became through flattening, and the
    number of channels that never change (the network input's, also multiplied by flattening)."""

    group_root: fx.Node | None
    mult: int
    const: int


def is_depthwise(m: nn.Module) -> bool:
    """A Conv with one filter per input channel (groups == in_channels == out_channels)."""
    return (
        isinstance(m, nn.Conv1d | nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels
    )


def out_channels(m: nn.Module) -> int:
    """Output channels of a Conv, output features of a Linear."""
    return int(m.out_features if isinstance(m, nn.Linear) else m.out_channels)


def _module_kind(node: fx.Node, m: nn.Module) -> str:
    if isinstance(m, nn.Conv1d | nn.Conv2d):
        if is_depthwise(m):
            return "dw"
        if m.groups != 1:
            raise UnsupportedModelError(
                f"node '{node.name}' ({node.target}): grouped convolution with groups={m.groups} is not "
                "supported (only standard or depthwise convs)"
            )
        return "layer"
    if isinstance(m, nn.Linear):
        return "layer"
    if isinstance(m, nn.Flatten):
        return "flatten"
    if isinstance(m, _PASS_MODULES):
        return "pass"
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        raise UnsupportedModelError(f"node '{node.name}': BatchNorm left after folding")
    raise UnsupportedModelError(
        f"node '{node.name}' ({node.target}): module {type(m).__name__} is not supported by the search"
    )


def _function_kind(node: fx.Node) -> str:
    if node.target in _ADD_FUNCTIONS:
        return "add"
    if node.target is torch.flatten:
        return "flatten"
    if node.target in _PASS_FUNCTIONS:
        return "pass"
    if node.target is torch.cat:
        raise UnsupportedModelError(
            f"node '{node.name}': channel concatenation (torch.cat) is not supported yet"
        )
    name = getattr(node.target, "__name__", str(node.target))
    raise UnsupportedModelError(f"node '{node.name}': function {name} is not supported by the search")


def _method_kind(node: fx.Node) -> str:
    if node.target in _SHAPE_METHODS:
        return "shape"
    if node.target in ("flatten", "view", "reshape"):
        return "flatten"
    if node.target in _PASS_METHODS:
        return "pass"
    raise UnsupportedModelError(f"node '{node.name}': method .{node.target}() is not supported")


def classify(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """The kind of ``node``; raises :class:`UnsupportedModelError` for an op the search cannot handle."""
    if node.op == "placeholder":
        return "input"
    if node.op == "output":
        return "output"
    if node.op == "call_module":
        return _module_kind(node, modules[node.target])
    if node.op == "call_function":
        return _function_kind(node)
    if node.op == "call_method":
        return _method_kind(node)
    raise UnsupportedModelError(f"node '{node.name}': {node.op} {node.target} is not supported")


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


@dataclass
class SharingGroups:
    """The analysed graph: node kinds, sharing groups (by root node) and channel sources."""

    nodes: list[fx.Node]
    kinds: dict[fx.Node, str]
    members: dict[fx.Node, list[fx.Node]]  # group root -> its nodes, in graph order
    sources: dict[fx.Node, ChannelSource]
    input_root: fx.Node
    output_root: fx.Node
    _uf: _UnionFind

    def root(self, n: fx.Node) -> fx.Node:
        """The root node naming the sharing group of ``n``."""
        return self._uf.find(n)

    def tensor_args(self, n: fx.Node) -> list[fx.Node]:
        """The inputs of ``n`` that carry a tensor (shape queries left out)."""
        return _tensor_args(n, self.kinds)

    def layer_nodes(self) -> list[fx.Node]:
        """The Conv/Linear nodes the search replaces, in graph order."""
        return [n for n in self.nodes if self.kinds[n] in SEARCHED_KINDS]


def _tensor_args(node: fx.Node, kinds: dict[fx.Node, str]) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if kinds[a] != "shape"]


def _union_groups(nodes: list[fx.Node], kinds: dict[fx.Node, str]) -> _UnionFind:
    """Join every non-defining node with its tensor inputs: the incoming edges of the defining nodes
    (input, Conv, Linear) are the cuts between groups (docs/method.md §1.4)."""
    uf = _UnionFind()
    for n in nodes:
        if kinds[n] == "shape":
            continue
        uf.find(n)
        if kinds[n] in ("input", "layer"):
            continue
        for a in _tensor_args(n, kinds):
            uf.union(n, a)
    return uf


def _flattened(n: fx.Node, x: fx.Node, source: ChannelSource) -> ChannelSource:
    """The source after flattening ``x`` (batch, C, *spatial) to ``n`` (batch, C * spatial)."""
    in_shape = x.meta["tensor_meta"].shape
    out_shape = n.meta["tensor_meta"].shape
    if len(out_shape) != 2 or out_shape[0] != in_shape[0]:
        raise UnsupportedModelError(f"node '{n.name}': only flattening to (batch, features) is supported")
    spatial = 1
    for d in in_shape[2:]:
        spatial *= int(d)
    return ChannelSource(source.group_root, source.mult * spatial, source.const * spatial)


def _channel_sources(
    nodes: list[fx.Node], kinds: dict[fx.Node, str], uf: _UnionFind
) -> dict[fx.Node, ChannelSource]:
    """The :class:`ChannelSource` of every tensor node but the output, following the graph in order."""
    src: dict[fx.Node, ChannelSource] = {}
    for n in nodes:
        k = kinds[n]
        if k in ("shape", "output"):
            continue
        if k == "input":
            src[n] = ChannelSource(None, 1, int(n.meta["tensor_meta"].shape[1]))
        elif k == "layer":
            src[n] = ChannelSource(uf.find(n), 1, 0)
        else:
            ins = _tensor_args(n, kinds)
            if not ins:
                raise UnsupportedModelError(f"node '{n.name}' has no tensor input")
            src[n] = _flattened(n, ins[0], src[ins[0]]) if k == "flatten" else src[ins[0]]
    return src


def sharing_groups(gm: fx.GraphModule, modules: dict[str, nn.Module]) -> SharingGroups:
    """Classify the nodes of ``gm`` (shapes already propagated, BatchNorm folded), build its sharing
    groups and channel sources, and check that the input's group holds no layer or add."""
    nodes = list(gm.graph.nodes)
    kinds = {n: classify(n, modules) for n in nodes}
    uf = _union_groups(nodes, kinds)
    members: dict[fx.Node, list[fx.Node]] = {}
    for n in nodes:
        if kinds[n] != "shape":
            members.setdefault(uf.find(n), []).append(n)
    sources = _channel_sources(nodes, kinds, uf)
    out_node = next(n for n in nodes if n.op == "output")
    placeholder = next(n for n in nodes if n.op == "placeholder")
    found = SharingGroups(nodes, kinds, members, sources, uf.find(placeholder), uf.find(out_node), uf)
    if not found.layer_nodes():
        raise UnsupportedModelError("the model has no Conv/Linear layer to search")
    for n in members[found.input_root]:
        if kinds[n] in ("layer", "dw", "add"):
            raise UnsupportedModelError(
                f"node '{n.name}' combines the network input with layer outputs; not supported"
            )
    return found
