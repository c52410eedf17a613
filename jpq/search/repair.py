"""The discrete budget fit of budget mode (jpq/search/budget.py): make an argmax network meet a cost.

:func:`fit_to_budget` works on a discretized :class:`~jpq.search.net.SearchableNet` in place:

1. **Demote** while the exact cost (float64, the value ``result.json`` reports) is over the target: move
   channels one precision step down (8 -> 4 -> 2 -> 0 within the group's set) where the search's own
   logits lose least per unit of cost saved, ``(alpha[src] - alpha[dst]) / saving``. A group never loses
   its last channel; a per-layer group moves as a whole. When one channel saves nothing (NE16 pays per
   32-channel tile) the fewest channels of that precision that do save (1, 2, 4, ..., all) move together.
2. **Fill** (``fill=True``) while there is room: the reverse step, one precision up (0 -> 2 -> 4 -> 8)
   where the logits lose least per unit of cost added, as long as the network stays within the target.
   The search's relaxed cost collapses abruptly once the multiplier crosses a threshold and regrows
   slowly, so the argmax often ends well under the budget; filling uses what the user allowed.

A network's cost depends only on each sharing group's channel counts per precision (and on activation
precisions, left alone here), so candidates are costed from count vectors without touching the network;
the chosen channels are written back with ``set_channel_bits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from jpq.cost import bitops_per_layer, mpic_cycles_per_layer, ne16_cycles_per_layer
from jpq.cost.size import size_bits_per_layer
from jpq.cost.spec import W_BITS_ALL, LayerSpec

METRICS = ("size_kb", "ne16_cycles", "mpic_cycles", "bitops")


def _report(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    from jpq.cost import _report_specs

    return _report_specs(specs)


def metric_per_layer(specs: Sequence[LayerSpec], metric: str) -> Tensor:
    """Per-layer cost of ``metric`` with the reporting conventions (float64, clean depthwise size; size
    in bits)."""
    sp = _report(specs)
    if metric == "size_kb":
        return size_bits_per_layer(sp, dw_formula="clean")  # bits: metric_value converts the total
    if metric == "ne16_cycles":
        return ne16_cycles_per_layer(sp)
    if metric == "mpic_cycles":
        return mpic_cycles_per_layer(sp)
    if metric == "bitops":
        return bitops_per_layer(sp)
    raise ValueError(f"unknown budget metric {metric!r}; choose one of {', '.join(METRICS)}")


def metric_value(specs: Sequence[LayerSpec], metric: str) -> float:
    """The exact cost of a network under ``metric`` (the value ``result.json`` reports)."""
    with torch.no_grad():
        total = float(metric_per_layer(specs, metric).sum())
    return total / 8.0 / 1000.0 if metric == "size_kb" else total  # as evaluate_all: bits -> kB


def _specs_for(base: Sequence[LayerSpec], layers: Sequence[Any], hist: Sequence[Tensor]) -> list[LayerSpec]:
    """``base`` (argmax specs) with the channel counts of ``hist`` (one (4,) count vector per group)."""
    out = []
    for s, li in zip(base, layers, strict=True):
        cin = s.cin_eff if li.in_group is None else hist[li.in_group][1:].sum() * li.in_mult
        out.append(LayerSpec(s.name, s.op, s.kernel, s.out_hw, s.c_in, s.c_out, hist[li.group], cin, s.a_in))
    return out


def _histogram(bits: Sequence[int]) -> Tensor:
    return torch.tensor([float(sum(1 for b in bits if b == w)) for w in W_BITS_ALL], dtype=torch.float64)


def _moved(hist: Sequence[Tensor], gi: int, src: int, dst: int, k: int) -> list[Tensor]:
    """``hist`` with ``k`` channels of group ``gi`` moved from precision ``src`` to ``dst``."""
    h = [t.clone() if i == gi else t for i, t in enumerate(hist)]
    h[gi][W_BITS_ALL.index(src)] -= k
    h[gi][W_BITS_ALL.index(dst)] += k
    return h


@dataclass
class _State:
    net: Any
    metric: str
    base: list[LayerSpec]
    alpha: list[Tensor]  # the logits as the search left them (a snapshot: written-back groups lose theirs)
    bits: list[list[int]]
    hist: list[Tensor]

    def cost(self, hist: Sequence[Tensor] | None = None) -> float:
        return metric_value(_specs_for(self.base, self.net.layers, hist or self.hist), self.metric)


@dataclass
class _Move:
    """Move ``channels[:k]`` of ``group`` from ``src`` to ``dst``; ``delta`` = |cost change| (> 0)."""

    group: int
    src: int
    dst: int
    channels: list[int]  # every channel the move may take, least logit loss first
    losses: list[float]
    k: int
    delta: float

    @property
    def score(self) -> float:
        return sum(self.losses[: self.k]) / self.delta


_Step = tuple[int, int, list[int], list[float]]


def _steps(g: Any, bits: list[int], alpha: Tensor, down: bool) -> list[_Step]:
    """``(src, dst, channels, losses)`` of every one-step move of group ``g``: the channels at ``src`` by
    rising logit loss ``alpha[src] - alpha[dst]``; a group keeps >= 1 channel, a per-layer one moves whole."""
    out = []
    kept = sum(1 for b in bits if b != 0)
    for j in range(1, len(g.w_bits)):
        hi, lo = j, j - 1
        src_i, dst_i = (hi, lo) if down else (lo, hi)
        src, dst = g.w_bits[src_i], g.w_bits[dst_i]
        chans = [c for c, b in enumerate(bits) if b == src]
        if not chans or (g.per_layer and 0 in (src, dst)):
            continue
        loss = {c: float(alpha[src_i, 0 if g.per_layer else c] - alpha[dst_i, 0 if g.per_layer else c])
                for c in chans}
        chans.sort(key=lambda c: (loss[c], c))
        if dst == 0:
            chans = chans[: kept - 1]
        if chans:
            out.append((src, dst, chans, [loss[c] for c in chans]))
    return out


def _sizes(n: int) -> list[int]:
    out, k = [], 1
    while k < n:
        out.append(k)
        k *= 2
    return [*out, n]


def _best(state: _State, cost: float, *, down: bool, room: float = math.inf) -> _Move | None:
    """The move with the least logit loss per unit of cost: down, the fewest channels that save
    anything; up, one channel (a per-layer group: all) that keeps the cost within ``room``."""
    best: _Move | None = None
    for gi, g in enumerate(state.net.groups):
        for src, dst, chans, losses in _steps(g, state.bits[gi], state.alpha[gi], down):
            sizes = [len(chans)] if g.per_layer else _sizes(len(chans)) if down else [1]
            for k in sizes:
                delta = cost - state.cost(_moved(state.hist, gi, src, dst, k))
                delta = delta if down else -delta
                if down and delta <= 0:
                    continue
                if not down and delta > room:
                    break
                mv = _Move(gi, src, dst, chans, losses, k, max(delta, 1e-12))
                if best is None or mv.score < best.score:
                    best = mv
                break
    return best


def _apply(state: _State, mv: _Move, k: int) -> None:
    for c in mv.channels[:k]:
        state.bits[mv.group][c] = mv.dst
    state.hist = _moved(state.hist, mv.group, mv.src, mv.dst, k)


@dataclass
class BudgetFit:
    """What :func:`fit_to_budget` did: the exact cost before and after, channels moved each way."""

    before: float
    after: float
    demoted: int
    promoted: int


def fit_to_budget(net: Any, metric: str, target: float, *, fill: bool = True) -> BudgetFit:
    """Demote (then, with ``fill``, promote) channels of the discretized ``net`` in place so that its
    exact ``metric`` cost is <= ``target`` (and close to it); raises ValueError if the cheapest network
    the groups allow is still over."""
    state = _State(net, metric, _report(net.layer_specs(fresh=True)),
                   [g.alpha.detach().cpu().double().clone() for g in net.groups],
                   [g.channel_bits() for g in net.groups], [])
    state.hist = [_histogram(b) for b in state.bits]
    cost = before = state.cost()
    demoted = promoted = 0
    while cost > target:
        mv = _best(state, cost, down=True)
        if mv is None:
            raise ValueError(f"{metric}: the cheapest network the groups allow costs {cost:g} > {target:g}")
        k = mv.k
        excess = cost - target
        if not net.groups[mv.group].per_layer and excess > 2 * mv.delta:  # far over: several at once
            k = min(len(mv.channels), k * max(1, int(excess / (2 * mv.delta))))
        _apply(state, mv, k)
        cost, demoted = state.cost(), demoted + k
    while fill and (mv := _best(state, cost, down=False, room=target - cost)) is not None:
        k = mv.k
        room = target - cost
        if not net.groups[mv.group].per_layer and room > 4 * mv.delta:  # far under: several at once
            k = min(len(mv.channels), max(1, int(room / (4 * mv.delta))))
        _apply(state, mv, k)
        new = state.cost()
        if new > target:  # the batch overshot (costs are not linear): take the single channel only
            _apply(state, _Move(mv.group, mv.dst, mv.src, mv.channels[:k], mv.losses, k, mv.delta), k)
            _apply(state, mv, 1)
            k, new = 1, state.cost()
        cost, promoted = new, promoted + k
    for gi, g in enumerate(net.groups):
        if g.channel_bits() != state.bits[gi]:
            net.set_channel_bits(gi, state.bits[gi])
    net.discretize()
    final = metric_value(net.layer_specs(fresh=True), metric)
    if not math.isclose(final, cost, rel_tol=1e-12, abs_tol=1e-9):
        raise AssertionError(f"budget fit: the network costs {final}, its channel counts {cost}")
    return BudgetFit(before, final, demoted, promoted)


def floor_cost(net: Any, metric: str) -> float:
    """The cheapest network the groups allow: every channel at the lowest non-zero precision, prunable
    per-channel groups down to one channel."""
    hist = []
    for g in net.groups:
        low = next(b for b in g.w_bits if b != 0)
        h = torch.zeros(len(W_BITS_ALL), dtype=torch.float64)
        keep = 1 if g.w_bits[0] == 0 and not g.per_layer else g.channels
        h[W_BITS_ALL.index(low)] = keep
        h[0] = g.channels - keep
        hist.append(h)
    return metric_value(_specs_for(_report(net.layer_specs(fresh=True)), net.layers, hist), metric)
