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

from jpq.cost.spec import LayerSpec
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
        return self.net(x)

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
        thetas = [g.argmax_theta() if fresh else g.current_theta() for g in self.groups]
        counts = [g.sel @ th.sum(1) for g, th in zip(self.groups, thetas, strict=True)]  # (4,) each
        c_eff = [c[1:].sum() for c in counts]
        dev = counts[0].device
        float_in = self._const((0.0, 0.0, 1.0), dev)  # unquantized inputs are costed as 8 bit
        specs = []
        for li in self.layers:
            g = self.groups[li.group]
            if li.in_group is None:
                cin = self._const(float(li.in_const), dev)
                prod = self.input_quant
            else:
                cin = c_eff[li.in_group] * li.in_mult
                prod = self.groups[li.in_group].act
            if prod is None:
                a_in = float_in
            elif len(prod.bits) == 1:  # theta is the constant 1: a constant layout
                a_in = self._const(tuple(prod.sel[:, 0].tolist()), dev, prod.sel.dtype)
            else:
                a_in = prod.probs_all(_argmax_act(prod) if fresh else prod.current_theta())
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
                    a_in,
                )
            )
        return specs

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
