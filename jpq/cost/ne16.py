"""NE16 (GAP9 neural engine) latency in cycles (docs/method.md §5.5) and the NE16 precision refinement.

NE16 computes a layer in tiles: 3x3 spatial output tiles, 32 output channels per pass (16 depthwise),
16 input channels per load. The deployed network runs one sub-layer per weight precision (§8), so per
searched layer and per non-zero precision ``w`` the model evaluates the tile latency of a layer with
``Ko = n_w`` output channels and ``Ki = Cin_eff`` input channels, and sums. Activations are 8 bit and
their theta is ignored; ``Cin_eff`` is **not** detached.

Any kernel is covered by ``n3`` 3x3 passes and ``n1`` 1x1 passes::

    n3 = (kh // 3) * (kw // 3);   n1 = (kh % 3) * kw + (kw % 3) * kh - (kh % 3) * (kw % 3)

Single pass (constants of §5.5; ``is_1x1 = 1x1 and not depthwise``, ``is_dw = 3x3 and depthwise``)::

    load        = 19 if is_1x1 else 31
    weight_off  = 6 + k if is_dw else 6
    matvec      = 6 + k if is_1x1 else 6 + k * w_bits        (1x1 latency ignores w_bits)
    normquant   = 9 + ceil_div(4 * k, 4);   streamout = 13;   update_idx = 2
    iter(k)     = m * (load + weight_off + matvec + update_idx) + normquant + streamout
                  with m = 1 if is_dw else n_in = ceil_div(Ki, 16)
    latency     = n_sp * (n_body * iter(k_body) + (iter(k_rem) if k_rem != 0 else 0))
                  k_body = 16 if is_dw else 32; n_body = floor_div(Ko, k_body); k_rem = mod(Ko, k_body)
                  n_sp = ceil(Ho / 3) * ceil(Wo / 3)

Soft channel counts go through straight-through integer helpers whose backward passes the incoming
gradient unchanged to the first argument (gradient 1, not 1/b) and nothing to the second, exactly as the
reference; the ``k_rem != 0`` branch is an elementwise ``where``, so with soft theta almost every
precision pays one partial tile during the search and only one-hot theta removes it (§5.5, §11 item 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor

from jpq.cost.registry import (
    CostModel,
    StaticKey,
    empty_per_layer,
    register_cost,
    require_subset,
    stack_specs,
)
from jpq.cost.spec import W_BITS_ALL, LayerSpec

# ----------------------------------------------------------------------------- NE16 constants (§5.5)
IN_BUF_HWK = (5, 5, 16)
OUT_BUF_HWK = (3, 3, 32)
FIFO = 6
MEM_TP_BITS = 256
IN_BITS = OUT_BITS = 8
NQ_BITS = 32
UPDATE_IDX = 2
#: activations NE16 supports (input and output)
NE16_A_BITS: tuple[int, ...] = (8,)


def _ceil_int(a: int, b: int) -> int:
    """Integer ``ceil_div`` of the reference, ``(a - 1) // b + 1``, for the static quantities."""
    return (a - 1) // b + 1


LOAD_1X1 = 10 + 3 * 3 * _ceil_int(IN_BUF_HWK[2] * IN_BITS, MEM_TP_BITS)  # 19
LOAD_3X3 = FIFO + IN_BUF_HWK[0] * IN_BUF_HWK[1] * _ceil_int(IN_BUF_HWK[2] * IN_BITS, MEM_TP_BITS)  # 31
STREAMOUT = 3 + OUT_BUF_HWK[0] * OUT_BUF_HWK[1] * _ceil_int(OUT_BUF_HWK[2] * OUT_BITS, MEM_TP_BITS) + 1  # 13
NORMQUANT_BASE = 9  # shift and bias terms are off (nq_shift = nq_bias = False)
NQ_BYTES = NQ_BITS // 8  # 4


# ----------------------------------------------------------------------------- straight-through helpers
class _FloorDiv(torch.autograd.Function):
    """``floor(a / b)`` forward; backward: gradient 1 to ``a``, 0 to ``b`` (§5.5)."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor | float) -> Tensor:  # type: ignore[override]
        ctx.a_shape = a.shape
        ctx.b_shape = b.shape if isinstance(b, Tensor) else None
        return torch.div(a, b, rounding_mode="floor")

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        ga = grad.sum_to_size(ctx.a_shape) if ctx.needs_input_grad[0] else None
        gb = grad.new_zeros(ctx.b_shape) if ctx.needs_input_grad[1] else None
        return ga, gb


class _Mod(torch.autograd.Function):
    """``a mod b`` (floor convention, like Python ``%``) forward; backward: 1 to ``a``, 0 to ``b``."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor | float) -> Tensor:  # type: ignore[override]
        ctx.a_shape = a.shape
        ctx.b_shape = b.shape if isinstance(b, Tensor) else None
        return torch.remainder(a, b)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:  # type: ignore[override]
        ga = grad.sum_to_size(ctx.a_shape) if ctx.needs_input_grad[0] else None
        gb = grad.new_zeros(ctx.b_shape) if ctx.needs_input_grad[1] else None
        return ga, gb


def floor_div(a: Tensor, b: Tensor | float) -> Tensor:
    """Straight-through ``floor(a / b)``: exact forward, ``d/da = 1`` and ``d/db = 0`` (§5.5)."""
    return _FloorDiv.apply(a, b)


def mod(a: Tensor, b: Tensor | float) -> Tensor:
    """Straight-through ``a % b``: exact forward, ``d/da = 1`` and ``d/db = 0`` (§5.5)."""
    return _Mod.apply(a, b)


def ceil_div(a: Tensor, b: Tensor | float) -> Tensor:
    """``floor_div(a - 1, b) + 1`` exactly as the reference: ``ceil(a / b)`` only for integer ``a``
    (``ceil_div(16.5, 16) = 1`` while ``ceil(16.5 / 16) = 2``; ``ceil_div(0.5, 16) = 0``);
    gradient 1 to ``a``."""
    return floor_div(a - 1, b) + 1


# ----------------------------------------------------------------------------- static per-layer tensors
def kernel_passes(kernel: tuple[int, int]) -> tuple[int, int]:
    """``(n3, n1)``: the 3x3 and 1x1 passes covering a ``kh x kw`` kernel (§5.5); 10x4 -> (3, 13)."""
    kh, kw = kernel
    n3 = (kh // 3) * (kw // 3)
    n1 = (kh % 3) * kw + (kw % 3) * kh - (kh % 3) * (kw % 3)
    return n3, n1


@dataclass(frozen=True)
class _NE16Static:
    """Per-layer, per-mode (3x3 pass, 1x1 pass) and per-precision constants, shaped to broadcast.

    ``L`` layers, 2 modes, ``P`` = the non-zero precisions of ``W_BITS_ALL``.
    """

    count: Tensor  # (L, 2, 1)  number of passes of each mode (n3, n1)
    is_dw: Tensor  # (L, 2, 1)  bool: the pass uses the depthwise formulas
    k_body: Tensor  # (L, 2, 1)  channels of one full output tile
    a0: Tensor  # (L, 2, 1)  load + weight_off(0) + matvec(0) + update_idx
    c_k: Tensor  # (L, 2, P)  d(load + weight_off + matvec)/dk: is_dw + (1 if is_1x1 else w_bits)
    iter_body_a: Tensor  # (L, 2, P)  a0 + k_body * c_k (the per-input-tile part of iter(k_body))
    iter_body_b: Tensor  # (L, 2, 1)  normquant(k_body) + streamout
    n_sp: Tensor  # (L, 1, 1)  spatial output tiles


@lru_cache(maxsize=128)
def _ne16_static(key: StaticKey, device: torch.device, dtype: torch.dtype) -> _NE16Static:
    """Build the NE16 constants of a static layer description once (cached per architecture)."""
    w_nz = [w for w in W_BITS_ALL if w != 0]
    count, is_dw, k_body, a0, c_k, body_a, body_b, n_sp = ([] for _ in range(8))
    for op, kernel, out_hw in key:
        dw = op == "dw"
        n3, n1 = kernel_passes(kernel)
        modes = ((n3, False, dw), (n1, not dw, False))  # (passes, is_1x1, is_dw) of the 3x3 and 1x1 pass
        count.append([[m[0]] for m in modes])
        is_dw.append([[m[2]] for m in modes])
        kb = [16 if m[2] else 32 for m in modes]
        k_body.append([[k] for k in kb])
        a = [(LOAD_1X1 if m[1] else LOAD_3X3) + FIFO + FIFO + UPDATE_IDX for m in modes]
        a0.append([[x] for x in a])
        ck = [[int(m[2]) + (1 if m[1] else w) for w in w_nz] for m in modes]
        c_k.append(ck)
        body_a.append([[a[i] + kb[i] * c for c in ck[i]] for i in range(2)])
        body_b.append([[NORMQUANT_BASE + _ceil_int(kb[i] * NQ_BYTES, 4) + STREAMOUT] for i in range(2)])
        n_sp.append([[_ceil_int(out_hw[0], OUT_BUF_HWK[0]) * _ceil_int(out_hw[1], OUT_BUF_HWK[1])]])

    def t(x: list) -> Tensor:
        return torch.tensor(x, dtype=dtype, device=device)

    return _NE16Static(
        count=t(count),
        is_dw=torch.tensor(is_dw, dtype=torch.bool, device=device),
        k_body=t(k_body),
        a0=t(a0),
        c_k=t(c_k),
        iter_body_a=t(body_a),
        iter_body_b=t(body_b),
        n_sp=t(n_sp),
    )


# ----------------------------------------------------------------------------- the model
def _ne16_core(n_w: Tensor, cin_eff: Tensor, ns: _NE16Static) -> Tensor:
    """NE16 cycles of every layer: ``n_w (..., L, |W|)``, ``cin_eff (L,)`` -> ``(..., L)``.

    Leading batch dimensions of ``n_w`` evaluate many candidate assignments at once (used by
    :func:`ne16_promote`).
    """
    ko = n_w[..., 1:].unsqueeze(-2)  # (..., L, 1, P)  output channels of each precision sub-layer
    n_in = ceil_div(cin_eff, float(IN_BUF_HWK[2])).view(-1, 1, 1)  # (L, 1, 1)
    m = torch.where(ns.is_dw, torch.ones_like(n_in), n_in)  # (L, 2, 1)  depthwise: no input-tile loop
    n_body = floor_div(ko, ns.k_body)  # (..., L, 2, P)
    k_rem = mod(ko, ns.k_body)  # (..., L, 2, P)
    iter_body = m * ns.iter_body_a + ns.iter_body_b  # (L, 2, P)
    iter_rem = m * (ns.a0 + k_rem * ns.c_k) + (NORMQUANT_BASE + STREAMOUT) + ceil_div(k_rem * NQ_BYTES, 4.0)
    rem = torch.where(k_rem != 0, iter_rem, torch.zeros_like(iter_rem))
    latency = ns.n_sp * (n_body * iter_body + rem)  # (..., L, 2, P)
    return (latency * ns.count).sum(dim=(-2, -1))


def ne16_cycles_per_layer(specs: Sequence[LayerSpec]) -> Tensor:
    """``(L,)`` expected NE16 cycles of every layer (docs/method.md §5.5)."""
    if not specs:
        return empty_per_layer()
    st = stack_specs(specs)
    return _ne16_core(st.n_w, st.cin_eff, _ne16_static(st.key, st.device, st.dtype))


def ne16_cycles(specs: Sequence[LayerSpec]) -> Tensor:
    """Scalar expected NE16 cycles of the network (docs/method.md §5.5)."""
    return ne16_cycles_per_layer(specs).sum()


@register_cost("ne16")
class NE16Cost(CostModel):
    """NE16 latency as a :class:`CostModel` (unit: cycles); refuses non-8-bit activations."""

    name = "ne16"
    unit = "cycles"

    def per_layer(self, specs: Sequence[LayerSpec]) -> Tensor:
        return ne16_cycles_per_layer(specs)

    def check(self, w_bits: tuple[int, ...], a_bits: tuple[int, ...], input_bits: tuple[int, ...]) -> None:
        super().check(w_bits, a_bits, input_bits)
        require_subset(self.name, "activation", a_bits, NE16_A_BITS)
        require_subset(self.name, "input activation", input_bits, NE16_A_BITS)


# ----------------------------------------------------------------------------- precision refinement
def _promotion_candidates(n: Tensor) -> Tensor:
    """Every move of ``m >= 1`` channels from a lower to a higher non-zero precision: ``(B, |W|)``.

    Ordered by (source precision, target precision, m) ascending, so that among equal gains the first
    candidate moves the fewest channels to the lowest precision (least extra memory).
    """
    nz = [i for i, w in enumerate(W_BITS_ALL) if w != 0]
    cands: list[Tensor] = []
    for lo in nz:
        n_lo = int(n[lo].item())
        if n_lo == 0:
            continue
        moved = torch.arange(1, n_lo + 1, dtype=n.dtype, device=n.device)
        for hi in nz:
            if W_BITS_ALL[hi] <= W_BITS_ALL[lo]:
                continue
            c = n.expand(n_lo, -1).clone()
            c[:, lo] -= moved
            c[:, hi] += moved
            cands.append(c)
    return torch.cat(cands) if cands else n.new_zeros((0, n.numel()))


def ne16_promote(specs: Sequence[LayerSpec], group_of_layer: Sequence[int]) -> dict[int, Tensor]:
    """NE16 precision refinement of a discrete architecture (docs/method.md §5.9; cf. §12 "promotion").

    NE16 pays per output tile of every per-precision sub-layer, and a 1x1 sub-layer costs the same at any
    weight precision, so a few channels left at a low precision can cost more than raising them to fill
    the tile of a higher precision. Per sharing group (all its layers carry the same ``n_w``), greedily
    apply the move of channels from a lower non-zero precision to a higher one that lowers the group's
    summed NE16 cycles the most, until no move helps. Pruned channels and the kept-channel count never
    change, so no other layer's ``Cin_eff`` changes. Precision only rises, so the accuracy of the
    fine-tuned network is not expected to drop.

    Args:
        specs: one-hot (integer) specs of the network.
        group_of_layer: the sharing-group id of each layer of ``specs``.

    Returns:
        group id -> new integer ``n_w`` (int64, aligned with ``W_BITS_ALL``), for every group.
    """
    if len(group_of_layer) != len(specs):
        raise ValueError(f"group_of_layer has {len(group_of_layer)} entries for {len(specs)} layers")
    result: dict[int, Tensor] = {}
    if not specs:
        return result
    with torch.no_grad():
        st = stack_specs(specs)
        n_all = st.n_w.to(torch.float64)
        cin = st.cin_eff.to(torch.float64)
        if (n_all - n_all.round()).abs().max() > 1e-6:
            raise ValueError("ne16_promote needs one-hot specs (integer channel counts)")
        n_all = n_all.round()
        for g in dict.fromkeys(group_of_layer):
            idx = [i for i, x in enumerate(group_of_layer) if x == g]
            n_g = n_all[idx]
            if (n_g != n_g[0]).any():
                raise ValueError(f"layers of sharing group {g} have different channel counts n_w")
            ns = _ne16_static(tuple(st.key[i] for i in idx), st.device, torch.float64)
            cin_g = cin[idx]

            def group_cycles(cands: Tensor, cin_g: Tensor = cin_g, ns: _NE16Static = ns) -> Tensor:
                # (B, |W|) -> (B,): every layer of the group carries the candidate assignment
                return _ne16_core(cands.unsqueeze(-2).expand(-1, len(cin_g), -1), cin_g, ns).sum(dim=-1)

            cur = n_g[0]
            cur_cycles = group_cycles(cur.unsqueeze(0))[0]
            while True:
                cands = _promotion_candidates(cur)
                if cands.shape[0] == 0:
                    break
                cycles = group_cycles(cands)
                best = int(torch.argmin(cycles))
                if not bool(cycles[best] < cur_cycles - 0.5):
                    break
                cur, cur_cycles = cands[best], cycles[best]
            result[g] = cur.to(torch.int64)
    return result


__all__ = [
    "NE16Cost",
    "ceil_div",
    "floor_div",
    "kernel_passes",
    "mod",
    "ne16_cycles",
    "ne16_cycles_per_layer",
    "ne16_promote",
]
