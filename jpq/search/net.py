"""The searchable network: the rewritten graph plus its sharing groups, layer table and sampler state.

It exposes what the rest of jpq needs and nothing of the layer internals: ``layer_specs()`` for the
cost models (§5.1), parameter families for the two optimizers (§6.1), ``set_temperature`` (§3.4),
``discretize()`` (§3.5) and the final architecture as plain data (``arch()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn

from jpq.cost.registry import StackedSpecs, static_key, static_tensors
from jpq.cost.spec import LayerSpec
from jpq.quant import native
from jpq.search.layers import SearchLayer, weight_side_ahead, weight_side_done
from jpq.search.quantizers import ActQuantizer, ChannelGate
from jpq.search.sampler import SamplerState, one_hot_argmax


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one searched layer.

    ``in_group``/``in_mult``/``in_const`` give the effective input channels (§5.1):
    ``Cin_eff = in_mult * C_eff(in_group)`` or the constant ``in_const`` when the input is the network input.
    """

    name: str
    op: str
    kernel: tuple[int, int]
    out_hw: tuple[int, int]
    c_in: int
    c_out: int
    group: int
    in_group: int | None
    in_mult: int
    in_const: int


class SearchableNet(nn.Module):
    """A converted network; call it like the seed network."""

    def __init__(
        self,
        gm: fx.GraphModule,
        groups: list[ChannelGate],
        input_quant: ActQuantizer | None,
        layers: list[LayerInfo],
        state: SamplerState,
    ) -> None:
        super().__init__()
        self.net = gm
        object.__setattr__(self, "groups", groups)  # registered inside gm as jpq_groups
        object.__setattr__(self, "input_quant", input_quant)
        self.layers = layers
        self.state = state
        self.discrete = False

    def forward(self, x: Tensor) -> Tensor:
        layers = self._ahead_layers()
        if not layers:
            return self.net(x)
        drawn = weight_side_ahead(layers)
        try:
            return self.net(x)
        finally:
            weight_side_done(layers, drawn)

    def _ahead_layers(self) -> list[SearchLayer]:
        """The searched layers when this pass computes their weight side ahead in one native call
        (:func:`~jpq.search.layers.weight_side_ahead`): the fused step on the CPU with autograd on, a
        deterministic sampler (or a discrete net) and only quantizing layers (not PIT's); else []."""
        st = self.state
        if not (st.fused and torch.is_grad_enabled() and (st.name != "gumbel" or self.discrete)):
            return []
        layers = self.__dict__.get("_search_layers")
        if layers is None:
            found = [m for m in self.net.modules() if isinstance(m, SearchLayer)]
            plain = all(type(m).quantized_params is SearchLayer.quantized_params for m in found)
            layers = self.__dict__["_search_layers"] = found if plain else []
        return layers if layers and native.supports(layers[0].weight) else []

    # -- checkpoints carry the sampler state -----------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"temperature": self.state.temperature, "discrete": self.discrete}

    def set_extra_state(self, extra: dict[str, Any]) -> None:
        self.state.temperature = float(extra["temperature"])
        if extra.get("discrete") and not self.discrete:
            self.discretize()

    # -- parameter families (§6.1) -----------------------------------------------------------------
    def arch_parameters(self) -> list[nn.Parameter]:
        """The NAS parameters: every ``alpha`` (weights, activations, input)."""
        return [p for n, p in self.named_parameters() if n.endswith("alpha")]

    def clip_parameters(self) -> list[nn.Parameter]:
        """PACT clips: network parameters trained without weight decay (§2.2)."""
        return [p for n, p in self.named_parameters() if n.endswith(("clip_val", "clip_lo"))]

    def weight_parameters(self) -> list[nn.Parameter]:
        """Weights and biases of the searched layers."""
        return [p for n, p in self.named_parameters() if not n.endswith(("alpha", "clip_val", "clip_lo"))]

    # -- temperature and discretization ---------------------------------------------------------------
    def set_temperature(self, t: float) -> None:
        self.state.temperature = float(t)

    def discretize(self) -> SearchableNet:
        """Argmax per channel and per activation tensor, alphas frozen (§3.5); in place, returns self."""
        for g in self.groups:
            g.freeze()
        if self.input_quant is not None:
            self.input_quant.freeze()
        self.discrete = True
        return self

    def set_channel_bits(self, group: int, bits: list[int]) -> None:
        """Impose a precision per output channel on one group (0 = pruned), e.g. after a refinement.

        The group's logits become one-hot (a margin of 10 in favour of the chosen precision), so the
        argmax — and the discrete network — follow ``bits``.
        """
        g = self.groups[group]
        if g.per_layer and len(set(bits)) > 1:
            raise ValueError(f"group {group} is searched per layer: one precision for all channels")
        if len(bits) != g.channels or any(b not in g.w_bits for b in bits):
            raise ValueError(f"group {group}: need {g.channels} precisions from {g.w_bits}, got {bits}")
        with torch.no_grad():
            cols = [bits[0]] if g.per_layer else bits
            g.alpha.zero_()
            for c, b in enumerate(cols):
                g.alpha[g.w_bits.index(b), c] = 10.0
        g._frozen_theta = None
        g.last_theta = None

    # -- what the cost models see (§5.1) ---------------------------------------------------------
    def layer_specs(self, *, fresh: bool = False) -> list[LayerSpec]:
        """One :class:`LayerSpec` per searched layer.

        By default the theta of the last forward pass is used (same sample, with graph, §5.1);
        ``fresh=True`` uses the argmax assignment (the discrete network) without a forward pass.
        """
        counts = self._group_counts(fresh)
        c_eff = [c[1:].sum() for c in counts]
        dev = counts[0].device
        specs = []
        for li in self.layers:
            g = self.groups[li.group]
            if li.in_group is None:
                cin = self._const(float(li.in_const), dev)
            else:
                cin = c_eff[li.in_group] * li.in_mult
            specs.append(
                LayerSpec(
                    li.name,
                    li.op,
                    li.kernel,
                    li.out_hw,
                    li.c_in,
                    li.c_out,  # type: ignore[arg-type]
                    counts[g.index],
                    cin,
                    self._a_in(self._producer(li), fresh, dev),
                )
            )
        return specs

    def stacked_specs(self, *, fresh: bool = False) -> StackedSpecs:
        """What :func:`~jpq.cost.registry.stack_specs` makes of :meth:`layer_specs` (the same values), built
        from the groups' channel counts in a few tensor operations instead of per-layer specs and three
        stacks: the cost term of every search step."""
        counts = torch.stack(self._group_counts(fresh))  # (G, 4)
        dev, dtype = counts.device, counts.dtype
        plan = self._spec_plan(dev, dtype)
        c_eff = counts[:, 1:].sum(-1)  # (G,)
        from_group = c_eff.index_select(0, plan["in_group"]) * plan["mult"]
        cin = torch.where(plan["has_in"], from_group, plan["const"])
        sources = [self._a_in(q, fresh, dev).to(dtype) for q in plan["producers"]]
        a_in = torch.stack(sources).index_select(0, plan["source"])
        n_w = counts.index_select(0, plan["group"])
        return StackedSpecs(n_w, cin, a_in, plan["key"], static_tensors(plan["key"], dev, dtype))

    def _group_counts(self, fresh: bool) -> list[Tensor]:
        """Each group's expected channel count per weight precision, in the ``W_BITS_ALL`` layout (4,)."""
        thetas = [g.argmax_theta() if fresh else g.current_theta() for g in self.groups]
        return [g.sel @ th.sum(1) for g, th in zip(self.groups, thetas, strict=True)]

    def _producer(self, li: LayerInfo) -> ActQuantizer | None:
        """The quantizer of a layer's input: its producer group's, or the network input's."""
        return self.input_quant if li.in_group is None else self.groups[li.in_group].act

    def _a_in(self, q: ActQuantizer | None, fresh: bool, dev: torch.device) -> Tensor:
        """A layer's input-precision probabilities in the ``A_BITS_ALL`` layout."""
        if q is None:
            return self._const((0.0, 0.0, 1.0), dev)  # unquantized inputs are costed as 8 bit
        if len(q.bits) == 1:  # theta is the constant 1: a constant layout
            return self._const(tuple(q.sel[:, 0].tolist()), dev, q.sel.dtype)
        return q.probs_all(_argmax_act(q) if fresh else q.current_theta())

    def _spec_plan(self, dev: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """The static index tensors of :meth:`stacked_specs`, made once per device and dtype."""
        cache = self.__dict__.setdefault("_plans", {})
        if (dev, dtype) not in cache:
            prods = [self._producer(li) for li in self.layers]
            distinct = list({id(q): q for q in prods}.values())
            ids = [id(q) for q in distinct]

            def ints(xs: list[int]) -> Tensor:
                return torch.tensor(xs, dtype=torch.long, device=dev)

            cache[(dev, dtype)] = {
                "group": ints([li.group for li in self.layers]),
                "has_in": torch.tensor([li.in_group is not None for li in self.layers], device=dev),
                "in_group": ints([li.in_group or 0 for li in self.layers]),
                "mult": torch.tensor([float(li.in_mult) for li in self.layers], dtype=dtype, device=dev),
                "const": torch.tensor([float(li.in_const) for li in self.layers], dtype=dtype, device=dev),
                "producers": distinct,
                "source": ints([ids.index(id(q)) for q in prods]),
                "key": static_key(self.layer_specs(fresh=True)),
            }
        return cache[(dev, dtype)]

    def _const(
        self, value: float | tuple[float, ...], device: torch.device, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """A constant tensor of the cost specs, made once per value, device and dtype (never written to)."""
        cache = self.__dict__.setdefault("_consts", {})
        key = (value, device, dtype)
        if key not in cache:
            cache[key] = torch.tensor(value, device=device, dtype=dtype)
        return cache[key]

    # -- final architecture as data ----------------------------------------------------------------
    def arch(self) -> dict[str, Any]:
        """Per group and per layer: chosen precision per channel, kept channels, activation bits."""
        groups = []
        for g in self.groups:
            bits = g.channel_bits()
            groups.append(
                {
                    "group": g.index,
                    "members": list(g.members),
                    "channels": g.channels,
                    "kept": sum(b != 0 for b in bits),
                    "channel_bits": bits,
                    "a_bits": None if g.act is None else g.act.chosen_bits(),
                }
            )
        layers = []
        for li in self.layers:
            gr = groups[li.group]
            counts = {str(b): sum(1 for x in gr["channel_bits"] if x == b) for b in (0, 2, 4, 8)}
            a_in = self.input_bits() if li.in_group is None else groups[li.in_group]["a_bits"]
            layers.append(
                {
                    "name": li.name,
                    "group": li.group,
                    "op": li.op,
                    "c_in": li.c_in,
                    "c_out": li.c_out,
                    "kept": gr["kept"],
                    "w_bits_counts": counts,
                    "a_bits": gr["a_bits"],
                    "a_in_bits": a_in,
                }
            )
        return {"input_a_bits": self.input_bits(), "groups": groups, "layers": layers}

    def input_bits(self) -> int | None:
        """Chosen precision of the network input (None: float input, PIT)."""
        return None if self.input_quant is None else self.input_quant.chosen_bits()


def _argmax_act(q: ActQuantizer) -> Tensor:
    if len(q.bits) == 1:
        return torch.ones(1, device=q.alpha.device)
    return one_hot_argmax(q.alpha.detach())
