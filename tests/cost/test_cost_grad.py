"""Differentiability of the soft costs (docs/method.md §5.1-§5.4, §5.7, §11 items 1-2): directions,
finite differences against autograd, the detached input-channel term of the size cost, depthwise
formulas."""

from __future__ import annotations

import pytest
import torch

from jpq.cost import LayerSpec, bitops_per_layer, mpic_cycles, ne16_cycles, size_bits, size_bits_per_layer
from jpq.cost.bitops import bitops
from jpq.cost.mpic import mpic_cycles_per_layer

DT = torch.float64
# a small chain: conv3x3 3->8 (16x16), dw3x3 on 8 (16x16), conv1x1 8->12 (8x8), linear 12->5
STATIC = [
    ("c1", "conv", (3, 3), (16, 16), 3, 8),
    ("dw", "dw", (3, 3), (16, 16), 8, 8),
    ("pw", "conv", (1, 1), (8, 8), 8, 12),
    ("fc", "linear", (1, 1), (1, 1), 12, 5),
]


def _chain(n_w: torch.Tensor, cin: torch.Tensor, a_in: torch.Tensor) -> list[LayerSpec]:
    """Specs from row-stacked soft fields (so gradcheck can perturb them)."""
    return [
        LayerSpec(name, op, k, hw, ci, co, n_w[i], cin[i], a_in[i])
        for i, (name, op, k, hw, ci, co) in enumerate(STATIC)
    ]


def _soft_fields(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    rows, cins = [], []
    for _, _, _, _, ci, co in STATIC:
        theta = torch.softmax(torch.randn(4, co, generator=g, dtype=DT), dim=0)
        rows.append(theta.sum(dim=1))
        cins.append(ci * (0.6 + 0.3 * torch.rand((), generator=g, dtype=DT)))
    a_in = torch.softmax(torch.randn(len(STATIC), 3, generator=g, dtype=DT), dim=1)
    return torch.stack(rows), torch.stack(cins), a_in


def _leaf(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return tuple(t.detach().clone().requires_grad_(True) for t in ts)


@pytest.mark.parametrize(
    "fn",
    [
        lambda s: size_bits(s, detach_cin=False),
        lambda s: size_bits(s, detach_cin=False, dw_formula="clean"),
        bitops,
        mpic_cycles,
    ],
    ids=["size_ref", "size_clean", "bitops", "mpic"],
)
def test_finite_differences_match_autograd(fn) -> None:
    n_w, cin, a_in = _leaf(*_soft_fields())
    assert torch.autograd.gradcheck(
        lambda n, c, a: fn(_chain(n, c, a)), (n_w, cin, a_in), eps=1e-6, atol=1e-4
    )


def test_size_detached_cin_keeps_value_but_blocks_gradient() -> None:
    n_w, cin, a_in = _leaf(*_soft_fields(1))
    det = size_bits_per_layer(_chain(n_w, cin, a_in))
    live = size_bits_per_layer(_chain(n_w, cin, a_in), detach_cin=False)
    assert torch.equal(det.detach(), live.detach())  # same value
    det.sum().backward()
    assert cin.grad is None or torch.count_nonzero(cin.grad) == 0
    cin.grad = None
    live.sum().backward()
    assert torch.all(cin.grad > 0)
    # the value still follows Cin_eff: size of a conv is linear in it
    half = size_bits_per_layer(_chain(n_w, cin * 0.5, a_in))
    assert float(half[0].detach()) == pytest.approx(0.5 * float(det[0].detach()))


def test_detached_cin_blocks_gradient_into_the_producers_pruning_logits() -> None:
    # producer group with logits alpha (4 x 8); consumer's Cin_eff = producer's C_eff (§5.1)
    alpha = torch.zeros(4, 8, dtype=DT, requires_grad=True)
    n_prod = torch.softmax(alpha, dim=0).sum(dim=1)
    a8 = torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    prod = LayerSpec("p", "conv", (3, 3), (8, 8), 3, 8, n_prod, torch.tensor(3.0, dtype=DT), a8)
    cons_n = torch.tensor([0.0, 0.0, 0.0, 16.0], dtype=DT)
    cons = LayerSpec("c", "conv", (3, 3), (8, 8), 8, 16, cons_n, n_prod[1:].sum(), a8)

    def consumer_grad(cost) -> torch.Tensor:
        alpha.grad = None
        cost([prod, cons])[1].backward(retain_graph=True)
        return alpha.grad if alpha.grad is not None else torch.zeros_like(alpha)

    assert torch.count_nonzero(consumer_grad(lambda s: size_bits_per_layer(s))) == 0
    g = consumer_grad(lambda s: size_bits_per_layer(s, detach_cin=False))
    assert g[0].lt(0).all()  # more mass at 0 bits in the producer -> smaller consumer
    for cost in (mpic_cycles_per_layer, bitops_per_layer):
        assert consumer_grad(cost)[0].lt(0).all()  # MPIC/BitOps: Cin_eff not detached (§5.4)


@pytest.mark.parametrize("cost", ["size", "bitops", "mpic", "ne16"])
def test_costs_move_in_the_expected_direction(cost) -> None:
    fn = {
        "size": lambda s: size_bits(s, detach_cin=False),
        "bitops": bitops,
        "mpic": mpic_cycles,
        "ne16": ne16_cycles,
    }[cost]
    n_w, cin, a_in = _soft_fields(2)
    base = float(fn(_chain(n_w, cin, a_in)))
    # one channel of the first conv from 2 bits to 8 bits -> more expensive
    up = n_w.clone()
    up[0, 1] -= 0.5
    up[0, 3] += 0.5
    assert float(fn(_chain(up, cin, a_in))) > base
    # one more pruned channel in the 1x1 conv (from 8 bits) -> cheaper
    pruned = n_w.clone()
    pruned[2, 3] -= 0.5
    pruned[2, 0] += 0.5
    assert float(fn(_chain(pruned, cin, a_in))) < base
    if cost != "size":  # size with detach=False also drops, but via its own test above
        # a lower effective input-channel count of the 1x1 conv -> cheaper
        fewer = cin.clone()
        fewer[2] -= 3.0
        lower = float(fn(_chain(n_w, fewer, a_in)))
        # NE16 is a step function of Cin_eff (tiles of 16 input channels): no step is crossed here
        assert lower == base if cost == "ne16" else lower < base


@pytest.mark.parametrize(
    "fn", [size_bits, bitops, mpic_cycles, ne16_cycles], ids=["size", "bitops", "mpic", "ne16"]
)
def test_gradient_prefers_lower_precisions_and_pruning(fn) -> None:
    n_w, cin, a_in = _leaf(*_soft_fields(3))
    fn(_chain(n_w, cin, a_in)).backward()
    g = n_w.grad[0]  # first conv: 3x3, so NE16's matvec depends on w
    assert g[0] == 0.0  # pruned channels cost nothing
    assert 0.0 < g[1] < g[2] < g[3]
    if fn is not size_bits:
        assert cin.grad[2] > 0  # Cin_eff is live in the hardware models


def test_mpic_gradient_reaches_activation_probabilities() -> None:
    n_w, cin, a_in = _leaf(*_soft_fields(4))
    mpic_cycles(_chain(n_w, cin, a_in)).backward()
    # higher input-activation precision is slower on MPIC (LUT: a2 faster than a4 faster than a8)
    assert torch.all(a_in.grad[:, 0] < a_in.grad[:, 1])
    assert torch.all(a_in.grad[:, 1] <= a_in.grad[:, 2])


def test_depthwise_reference_versus_clean_formula() -> None:
    # dw 3x3 on 64 channels, all at 8 bits, Cin_eff = 64 (its own group's C_eff)
    n_w = torch.tensor([0.0, 0.0, 0.0, 64.0], dtype=DT, requires_grad=True)
    a8 = torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    spec = LayerSpec("dw", "dw", (3, 3), (25, 5), 64, 64, n_w, torch.tensor(64.0, dtype=DT), a8)
    ref = size_bits([spec])
    clean = size_bits([spec], dw_formula="clean")
    assert float(clean.detach()) == 64 * 9 * 8
    assert float(ref.detach()) == pytest.approx(64 * 9 * 8, rel=1e-5)
    # reference: d/dn_8 = Cin * k^2 / C_eff * (8 - eff_prec) = 0: pruning an 8-bit dw channel looks free
    (g_ref,) = torch.autograd.grad(ref, n_w)
    assert g_ref[3].item() == pytest.approx(0.0, abs=1e-3)
    assert g_ref[1].item() == pytest.approx(9 * (2 - 8), rel=1e-4)  # only the average precision matters
    # clean: k^2 * p per channel at p bits
    (g_clean,) = torch.autograd.grad(clean, n_w)
    assert g_clean.tolist() == [0.0, 18.0, 36.0, 72.0]


def test_reference_and_clean_agree_at_one_hot_with_pruning() -> None:
    # 40 of 64 depthwise channels kept at 4 bits; Cin_eff = 40 (same group)
    n_w = torch.tensor([24.0, 0.0, 40.0, 0.0], dtype=DT)
    a8 = torch.tensor([0.0, 0.0, 1.0], dtype=DT)
    spec = LayerSpec("dw", "dw", (3, 3), (25, 5), 64, 64, n_w, torch.tensor(40.0, dtype=DT), a8)
    assert float(size_bits([spec], dw_formula="clean")) == 40 * 9 * 4
    assert float(size_bits([spec])) == pytest.approx(40 * 9 * 4, rel=1e-5)
