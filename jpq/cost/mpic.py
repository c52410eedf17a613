"""MPIC latency in cycles and the derived energy (docs/method.md §5.4).

MPIC is the mixed-precision RISC-V core of Ottavi et al. (arXiv 2010.04073); its throughput depends on
the (activation, weight) precision pair. Per searched layer::

    MACs    = Cin_eff * C_eff * kh*kw * Ho*Wo                     conv (linear: kh*kw = Ho*Wo = 1)
    MACs    = Cin_eff * C_eff * kh*kw / (C_eff + 1e-6) * Ho*Wo    depthwise
    cycles  = sum_a theta_a_in[a] * MACs * sum_{w != 0} n_w / (C_eff + 1e-6) / LUT[a][w]

which is the cycle count of the per-precision sub-layers of the deployed network (§8); pruned channels
cost nothing. ``Cin_eff`` is **not** detached (unlike the size cost), so the cost back-propagates into the
previous group's 0-bit logits (§10 item 4). Energy is reported only: ``cycles / 250 MHz * 5.3825 mW``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import TypeVar

import torch
from torch import Tensor

from jpq.cost.registry import (
    CostModel,
    StackedSpecs,
    empty_per_layer,
    register_cost,
    require_subset,
    stack_specs,
)
from jpq.cost.spec import A_BITS_ALL, W_BITS_ALL, LayerSpec

#: MPIC throughput in MACs/cycle, ``[a_bits][w_bits]`` (§5.4)
MPIC_MACS_PER_CYCLE: dict[int, dict[int, float]] = {
    2: {2: 6.5, 4: 4.0, 8: 2.2},
    4: {2: 3.9, 4: 3.5, 8: 2.1},
    8: {2: 2.5, 4: 2.3, 8: 2.1},
}
#: clock and mean power of the four measured MPIC configurations (§5.4: mean of 5.30, 5.39, 5.46, 5.38 mW)
MPIC_CLOCK_HZ = 250e6
MPIC_POWER_W = 5.3825e-3

#: the ``C_eff + 1e-6`` guard of the reference MACs/fraction formulas (§5.4)
MACS_EPS = 1e-6

T = TypeVar("T", Tensor, float)


def macs_per_layer_stacked(st: StackedSpecs) -> Tensor:
    """``(L,)`` expected MACs (§5.4 definition, shared by BitOps §5.3); ``Cin_eff`` keeps its graph."""
    c_eff = st.c_eff
    chan = torch.where(st.static.is_dw, c_eff / (c_eff + MACS_EPS), c_eff) if st.static.has_dw else c_eff
    return st.cin_eff * chan * st.static.kk * st.static.hw


def macs_per_layer(specs: Sequence[LayerSpec]) -> Tensor:
    """``(L,)`` expected multiply-accumulates of every layer (docs/method.md §5.4)."""
    if not specs:
        return empty_per_layer()
    return macs_per_layer_stacked(stack_specs(specs))


@lru_cache(maxsize=16)
def _inv_lut(device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(len(A_BITS_ALL), len(W_BITS_ALL))`` cycles per MAC; 0 for the pruned (0-bit) column."""
    rows = [[0.0 if w == 0 else 1.0 / MPIC_MACS_PER_CYCLE[a][w] for w in W_BITS_ALL] for a in A_BITS_ALL]
    return torch.tensor(rows, dtype=dtype, device=device)


def mpic_cycles_per_layer(specs: Sequence[LayerSpec]) -> Tensor:
    """``(L,)`` expected MPIC cycles of every layer (docs/method.md §5.4)."""
    if not specs:
        return empty_per_layer()
    st = stack_specs(specs)
    cyc_per_mac = st.a_in @ _inv_lut(st.device, st.dtype)  # (L, |W|): sum_a theta_a / LUT[a][w]
    frac = (cyc_per_mac * st.n_w).sum(dim=-1) / (st.c_eff + MACS_EPS)  # (L,)
    return macs_per_layer_stacked(st) * frac


def mpic_cycles(specs: Sequence[LayerSpec]) -> Tensor:
    """Scalar expected MPIC cycles of the network (docs/method.md §5.4)."""
    return mpic_cycles_per_layer(specs).sum()


def mpic_energy_uj(cycles: T) -> T:
    """Energy in microjoules of ``cycles`` MPIC cycles: ``cycles / 250e6 * 5.3825e-3`` J (§5.4)."""
    return cycles / MPIC_CLOCK_HZ * MPIC_POWER_W * 1e6


def check_lut(
    model: str, w_bits: tuple[int, ...], a_bits: tuple[int, ...], input_bits: tuple[int, ...]
) -> None:
    """Refuse precisions outside the MPIC LUT: ``a`` in its rows, ``w`` in its columns or 0 (pruned)."""
    w_ok = (0, *sorted(MPIC_MACS_PER_CYCLE[8]))
    a_ok = tuple(sorted(MPIC_MACS_PER_CYCLE))
    require_subset(model, "weight", w_bits, w_ok)
    require_subset(model, "activation", a_bits, a_ok)
    require_subset(model, "input activation", input_bits, a_ok)


@register_cost("mpic")
class MPICCost(CostModel):
    """MPIC latency as a :class:`CostModel` (unit: cycles)."""

    name = "mpic"
    unit = "cycles"

    def per_layer(self, specs: Sequence[LayerSpec]) -> Tensor:
        return mpic_cycles_per_layer(specs)

    def check(self, w_bits: tuple[int, ...], a_bits: tuple[int, ...], input_bits: tuple[int, ...]) -> None:
        super().check(w_bits, a_bits, input_bits)
        check_lut(self.name, w_bits, a_bits, input_bits)
