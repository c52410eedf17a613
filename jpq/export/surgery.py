"""The physically pruned, precision-sorted network as a ``torch.fx.GraphModule`` (docs/method.md §8).

The search graph is copied node by node with every search module replaced by a fixed one
(:mod:`jpq.export.modules`) holding the pruned, permuted tensors of :mod:`jpq.export.plan`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import fx, nn

from jpq.errors import UnsupportedModelError
from jpq.export.modules import OutputOrder, act_module
from jpq.export.plan import ExportedLayer, GroupPlan, export_layers, plan_groups
from jpq.search import SearchableNet
from jpq.search.layers import GroupAct, SearchLayer
from jpq.search.quantizers import ActQuantizer


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def exported_model(net: SearchableNet) -> fx.GraphModule:
    """The plain exported network of a discretized net (plan, pruned layers, graph surgery)."""
    plans = plan_groups(net)
    return pruned_graph(net, plans, export_layers(net, plans))


def _fixed_module(m: nn.Module) -> nn.Module:
    """The replacement of a module that is not a searchable layer: quantizers become :class:`Pact`."""
    if isinstance(m, ActQuantizer):
        return act_module(m)
    if isinstance(m, GroupAct):
        act = m.group.act  # type: ignore[attr-defined]
        return nn.Identity() if act is None else act_module(act)
    return copy.deepcopy(m)


def pruned_graph(
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
        if n.op == "call_module" and isinstance(mods[n.target], SearchLayer):
            new_mods[n.target] = by_name[n.target].module
            y = graph.call_module(n.target, arg(n.args), arg(n.kwargs))
            act = mods[n.target].group.act  # type: ignore[attr-defined]
            if act is not None:
                name = _unique(f"{n.target}_act", taken)
                new_mods[name] = act_module(act)
                y = graph.call_module(name, (y,))
            env[n] = y
        elif n.op == "call_module":
            new_mods[n.target] = _fixed_module(mods[n.target])
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
