"""Hardware-aware cost models of the search (docs/method.md §5): pure, differentiable functions of a
``list[LayerSpec]``.

* ``size``   weight memory in bits (§5.2, the paper's default regularizer);
* ``bitops`` expected bit-operations (§5.3);
* ``mpic``   MPIC RISC-V core latency in cycles (§5.4), energy derived from it;
* ``ne16``   GAP9 NE16 accelerator latency in cycles (§5.5).

Importing this package registers all four (``get_cost(name)``). This module also holds the reporting
helpers: :func:`evaluate_all` (every cost of a network), :func:`per_layer_table` and :func:`to_uniform`
(the seed at one uniform precision, the reference of cost normalisation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

# the function ``bitops`` is not re-exported here: it would shadow the submodule ``jpq.cost.bitops`` and
# break ``_target_: jpq.cost.bitops.BitOpsCost`` lookups; use ``jpq.cost.bitops.bitops``
from jpq.cost.bitops import BitOpsCost, bitops_per_layer
from jpq.cost.bitops import bitops as _bitops
from jpq.cost.mpic import (
    MPIC_MACS_PER_CYCLE,
    MPICCost,
    macs_per_layer,
    mpic_cycles,
    mpic_cycles_per_layer,
    mpic_energy_uj,
)
from jpq.cost.ne16 import NE16Cost, ceil_div, floor_div, mod, ne16_cycles, ne16_cycles_per_layer, ne16_promote
from jpq.cost.registry import COST_NAMES, CostModel, get_cost, register_cost, registered_costs
from jpq.cost.size import SizeCost, size_bits, size_bits_per_layer
from jpq.cost.spec import A_BITS_ALL, W_BITS_ALL, LayerSpec, uniform_spec

#: the keys of :func:`evaluate_all`, in report order
METRIC_NAMES: tuple[str, ...] = (
    "size_bits",
    "size_kb",
    "bitops",
    "mpic_cycles",
    "mpic_energy_uj",
    "ne16_cycles",
)


def _report_specs(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Detached float64 copies: reports need exact integers (float32 spacing is 0.5 at 6e6 cycles)."""
    out = []
    for s in specs:
        out.append(
            LayerSpec(
                s.name,
                s.op,
                s.kernel,
                s.out_hw,
                s.c_in,
                s.c_out,
                s.n_w.detach().to(torch.float64),
                torch.as_tensor(s.cin_eff).detach().to(torch.float64),
                s.a_in.detach().to(torch.float64),
            )
        )
    return out


def evaluate_all(specs: Sequence[LayerSpec]) -> dict[str, float]:
    """Every cost of a network as plain floats (no graph), e.g. for ``result.json``.

    Keys: ``size_bits``, ``size_kb`` (= bits / 8 / 1000, the README plots' kB), ``bitops``,
    ``mpic_cycles``, ``mpic_energy_uj``, ``ne16_cycles``. Computed in float64 (exact integers). Size uses
    the ``"clean"`` depthwise formula, so for one-hot specs it is the exact deployed weight memory (§5.2;
    the reference formula differs only by its ``1e-4`` guard, e.g. 176,127.97 vs 176,128 bits for DS-CNN).
    """
    with torch.no_grad():
        sp = _report_specs(specs)
        size = float(size_bits(sp, dw_formula="clean"))
        mpic = float(mpic_cycles(sp))
        return {
            "size_bits": size,
            "size_kb": size / 8.0 / 1000.0,
            "bitops": float(_bitops(sp)),
            "mpic_cycles": mpic,
            "mpic_energy_uj": mpic_energy_uj(mpic),
            "ne16_cycles": float(ne16_cycles(sp)),
        }


def per_layer_table(specs: Sequence[LayerSpec]) -> list[dict[str, object]]:
    """One row per layer for reports: shape, kept channels, channel counts per weight precision
    (``n_w0`` = pruned, ``n_w2``, ...), expected input precision and every cost of the layer, with the
    conventions of :func:`evaluate_all`."""
    if not specs:
        return []
    with torch.no_grad():
        sp = _report_specs(specs)
        size = size_bits_per_layer(sp, dw_formula="clean").tolist()
        bops = bitops_per_layer(sp).tolist()
        mpic = mpic_cycles_per_layer(sp).tolist()
        ne16 = ne16_cycles_per_layer(sp).tolist()
        a_bits = torch.tensor(A_BITS_ALL, dtype=torch.float64)
        rows: list[dict[str, object]] = []
        for i, s in enumerate(sp):
            row: dict[str, object] = {
                "name": s.name,
                "op": s.op,
                "kernel": f"{s.kernel[0]}x{s.kernel[1]}",
                "out_hw": f"{s.out_hw[0]}x{s.out_hw[1]}",
                "c_in": s.c_in,
                "c_out": s.c_out,
                "cin_eff": float(s.cin_eff),
                "kept": float(s.c_eff),
            }
            for w, n in zip(W_BITS_ALL, s.n_w.tolist(), strict=True):
                row[f"n_w{w}"] = n
            row["a_in_bits"] = float(s.a_in @ a_bits)
            row.update(
                size_bits=size[i],
                bitops=bops[i],
                mpic_cycles=mpic[i],
                mpic_energy_uj=mpic_energy_uj(mpic[i]),
                ne16_cycles=ne16[i],
            )
            rows.append(row)
        return rows


def to_uniform(specs: Sequence[LayerSpec], w_bits: int, a_bits: int = 8) -> list[LayerSpec]:
    """The same layers with every output channel at ``w_bits``, input activations at ``a_bits`` and
    ``cin_eff = c_in``: the seed network at a uniform precision (§5.6), e.g. the normaliser
    ``cost(specs) / cost(to_uniform(specs, 8))``. Tensors follow the device and dtype of ``specs``."""
    if w_bits not in W_BITS_ALL or w_bits == 0:
        allowed = tuple(b for b in W_BITS_ALL if b)
        raise ValueError(f"to_uniform: w_bits must be one of {allowed}, got {w_bits}")
    if a_bits not in A_BITS_ALL:
        raise ValueError(f"to_uniform: a_bits must be one of {A_BITS_ALL}, got {a_bits}")
    out = []
    for s in specs:
        u = uniform_spec(s.name, s.op, s.kernel, s.out_hw, s.c_in, s.c_out, w_bits, a_bits)
        dtype = s.n_w.dtype if s.n_w.dtype.is_floating_point else u.n_w.dtype
        u.n_w = u.n_w.to(device=s.n_w.device, dtype=dtype)
        u.cin_eff = u.cin_eff.to(device=s.n_w.device, dtype=dtype)
        u.a_in = u.a_in.to(device=s.n_w.device, dtype=dtype)
        out.append(u)
    return out


__all__ = [
    "A_BITS_ALL",
    "COST_NAMES",
    "METRIC_NAMES",
    "MPIC_MACS_PER_CYCLE",
    "W_BITS_ALL",
    "BitOpsCost",
    "CostModel",
    "LayerSpec",
    "MPICCost",
    "NE16Cost",
    "SizeCost",
    "bitops_per_layer",
    "ceil_div",
    "evaluate_all",
    "floor_div",
    "get_cost",
    "macs_per_layer",
    "mod",
    "mpic_cycles",
    "mpic_cycles_per_layer",
    "mpic_energy_uj",
    "ne16_cycles",
    "ne16_cycles_per_layer",
    "ne16_promote",
    "per_layer_table",
    "register_cost",
    "registered_costs",
    "size_bits",
    "size_bits_per_layer",
    "to_uniform",
    "uniform_spec",
]
