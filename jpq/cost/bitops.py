"""BitOps cost: expected bit-operations (docs/method.md §5.3; defined by the paper's code, never used there).

With the LUT ``LUT[a][w] = 1 / (a*w)`` of the reference, the MPIC formula of §5.4 becomes::

    bitops = sum_a theta_a_in[a] * MACs * sum_{w != 0} n_w / (C_eff + 1e-6) * a * w
           = MACs * (sum_a theta_a * a) * (sum_w w * n_w) / (C_eff + 1e-6)

with the same ``MACs`` (``Cin_eff`` not detached, depthwise ``C_eff / (C_eff + 1e-6)`` factor).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from jpq.cost.mpic import MACS_EPS, check_lut, macs_per_layer_stacked
from jpq.cost.registry import CostModel, empty_per_layer, register_cost, stack_specs
from jpq.cost.spec import LayerSpec


def bitops_per_layer(specs: Sequence[LayerSpec]) -> Tensor:
    """``(L,)`` expected bit-operations of every layer (docs/method.md §5.3)."""
    if not specs:
        return empty_per_layer()
    st = stack_specs(specs)
    eff_a = st.a_in @ st.static.a_bits  # (L,)  sum_a theta_a * a
    eff_w = (st.n_w @ st.static.w_bits) / (st.c_eff + MACS_EPS)  # (L,)  sum_w w * n_w / C_eff
    return macs_per_layer_stacked(st) * eff_a * eff_w


def bitops(specs: Sequence[LayerSpec]) -> Tensor:
    """Scalar expected bit-operations of the network (docs/method.md §5.3)."""
    return bitops_per_layer(specs).sum()


@register_cost("bitops")
class BitOpsCost(CostModel):
    """BitOps as a :class:`CostModel` (unit: bit-operations); its LUT spans the MPIC precisions."""

    name = "bitops"
    unit = "bitops"

    def per_layer(self, specs: Sequence[LayerSpec]) -> Tensor:
        return bitops_per_layer(specs)

    def check(self, w_bits: tuple[int, ...], a_bits: tuple[int, ...], input_bits: tuple[int, ...]) -> None:
        super().check(w_bits, a_bits, input_bits)
        check_lut(self.name, w_bits, a_bits, input_bits)
