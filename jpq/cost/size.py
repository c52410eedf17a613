"""Weight-memory cost in bits (docs/method.md §5.2), the paper's default regularizer.

Per searched layer, with ``eff_prec = sum_p p*n_p / (C_eff + 1e-10)`` (average bits of the kept channels)::

    conv    size = Cin_eff * C_eff * kh*kw * eff_prec
    linear  size = Cin_eff * C_eff * eff_prec                      (kh*kw = 1)
    dw      size = Cin_eff * C_eff * kh*kw / (C_eff + 1e-4) * eff_prec     ("reference")
            size = kh*kw * sum_p p*n_p                                    ("clean", §11 item 2)

Biases and the input quantizer contribute nothing. Two deliberate options (§11 items 1-2):

* ``detach_cin=True`` (reference): ``Cin_eff`` enters by value only, so pruning in layer l lowers the
  size of l+1 but layer l+1's size sends no gradient into layer l's 0-bit logits.
* ``dw_formula``: the reference depthwise formula has the right value but its gradient only sees the
  average precision (it effectively penalises pruning a depthwise channel); ``"clean"`` is the plain
  expected count of depthwise weight bits. Both give the same value at one-hot (up to the 1e-4 term).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from jpq.cost.registry import CostModel, empty_per_layer, register_cost, stack_specs
from jpq.cost.spec import LayerSpec
from jpq.errors import ConfigError

DwFormula = Literal["reference", "clean"]
DW_FORMULAS: tuple[str, ...] = ("reference", "clean")

#: guards of the reference implementation (§5.2); kept for value and gradient fidelity
_EPS_PREC = 1e-10
_EPS_DW = 1e-4


def _check_dw_formula(dw_formula: str) -> None:
    if dw_formula not in DW_FORMULAS:
        raise ConfigError(f"size cost: dw_formula must be one of {DW_FORMULAS}, got {dw_formula!r}")


def size_bits_per_layer(
    specs: Sequence[LayerSpec], *, detach_cin: bool = True, dw_formula: DwFormula = "reference"
) -> Tensor:
    """``(L,)`` expected weight memory of every layer in bits (docs/method.md §5.2)."""
    _check_dw_formula(dw_formula)
    if not specs:
        return empty_per_layer()
    st = stack_specs(specs)
    c_eff = st.c_eff  # (L,)
    sum_pn = st.n_w @ st.static.w_bits  # (L,)  sum_p p * n_p; p = 0 contributes nothing
    eff_prec = sum_pn / (c_eff + _EPS_PREC)
    cin = st.cin_eff.detach() if detach_cin else st.cin_eff
    kk, is_dw = st.static.kk, st.static.is_dw
    # standard conv / linear: Cin * C_eff * k^2 * eff_prec written as Cin * k^2 * sum_p p n_p, which is the
    # same expression without the 1e-10 division guard, so one-hot assignments give exact integers
    std = cin * kk * sum_pn
    if st.static.has_dw:
        if dw_formula == "clean":
            return torch.where(is_dw, kk * sum_pn, std)
        return torch.where(is_dw, cin * (c_eff / (c_eff + _EPS_DW)) * kk * eff_prec, std)
    return std


def size_bits(
    specs: Sequence[LayerSpec], *, detach_cin: bool = True, dw_formula: DwFormula = "reference"
) -> Tensor:
    """Scalar expected weight memory of the network in bits (docs/method.md §5.2)."""
    return size_bits_per_layer(specs, detach_cin=detach_cin, dw_formula=dw_formula).sum()


@register_cost("size")
class SizeCost(CostModel):
    """The size regularizer as a :class:`CostModel` (unit: bits). Any weight precision is modelled."""

    name = "size"
    unit = "bits"

    def __init__(
        self, *, detach_cin: bool = False, dw_formula: DwFormula = "reference", name: str | None = None
    ) -> None:
        super().__init__(name=name)
        _check_dw_formula(dw_formula)
        self.detach_cin = bool(detach_cin)
        self.dw_formula: DwFormula = dw_formula

    def per_layer(self, specs: Sequence[LayerSpec]) -> Tensor:
        return size_bits_per_layer(specs, detach_cin=self.detach_cin, dw_formula=self.dw_formula)

    def __repr__(self) -> str:
        return f"SizeCost(detach_cin={self.detach_cin}, dw_formula={self.dw_formula!r})"
