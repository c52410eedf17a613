"""NE16 model details (docs/method.md §5.5, §11 item 9): straight-through helpers, kernel decomposition,
soft partial tiles, gradients, the 8-bit-activation refusal and the precision refinement."""

from __future__ import annotations

import pytest
import torch

from jpq.cost import LayerSpec, NE16Cost, ceil_div, floor_div, mod, ne16_cycles, ne16_cycles_per_layer
from jpq.cost.ne16 import kernel_passes, ne16_promote
from jpq.cost.spec import uniform_spec
from jpq.errors import ConfigError


def _spec(op, kernel, out_hw, c_in, n_w, cin_eff, requires_grad=False) -> LayerSpec:
    n = torch.tensor(n_w, dtype=torch.float64, requires_grad=requires_grad)
    cin = torch.tensor(float(cin_eff), dtype=torch.float64, requires_grad=requires_grad)
    a = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    return LayerSpec("l", op, kernel, out_hw, c_in, int(round(sum(n_w))), n, cin, a)


# ----------------------------------------------------------------------------- STE helpers
def test_floor_div_and_mod_forward_exact_and_gradient_one_to_first_argument() -> None:
    a = torch.tensor([40.5, 31.0, 64.0, 0.25], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(32.0, dtype=torch.float64, requires_grad=True)
    q = floor_div(a, b)
    r = mod(a, b)
    assert q.tolist() == [1.0, 0.0, 2.0, 0.0]
    assert r.tolist() == [8.5, 31.0, 0.0, 0.25]
    (q * torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)).sum().backward()
    assert a.grad.tolist() == [1.0, 2.0, 3.0, 4.0]  # gradient passed unchanged (1, not 1/b)
    assert b.grad is None or b.grad.item() == 0.0  # nothing to the second argument
    a.grad, b.grad = None, None
    r.sum().backward()
    assert a.grad.tolist() == [1.0, 1.0, 1.0, 1.0]
    assert b.grad is None or b.grad.item() == 0.0


def test_ste_helpers_broadcast_gradient_to_first_argument_shape() -> None:
    a = torch.tensor([5.0, 17.0, 33.0], requires_grad=True)
    b = torch.tensor([[16.0], [32.0]], requires_grad=True)
    out = floor_div(a, b)  # (2, 3)
    assert out.tolist() == [[0.0, 1.0, 2.0], [0.0, 0.0, 1.0]]
    out.sum().backward()
    assert a.grad.tolist() == [2.0, 2.0, 2.0]
    assert b.grad.tolist() == [[0.0], [0.0]]


def test_ceil_div_replicates_reference_on_fractions() -> None:
    a = torch.tensor([16.0, 17.0, 16.5, 0.5, 1.0, 32.0], requires_grad=True)
    out = ceil_div(a, 16.0)
    # integers: true ceil; fractions: floor((a - 1) / b) + 1, e.g. 16.5 -> 1 (ceil would be 2), 0.5 -> 0
    assert out.tolist() == [1.0, 2.0, 1.0, 0.0, 1.0, 2.0]
    out.sum().backward()
    assert a.grad.tolist() == [1.0] * 6


@pytest.mark.parametrize(
    "kernel,passes",
    [((3, 3), (1, 0)), ((1, 1), (0, 1)), ((10, 4), (3, 13)), ((7, 7), (4, 13)), ((5, 1), (0, 5))],
)
def test_generalised_kernel_decomposition(kernel, passes) -> None:
    assert kernel_passes(kernel) == passes


# ----------------------------------------------------------------------------- layer values
def test_soft_partial_tile_value_and_gradients() -> None:
    # 3x3 conv, 3x3 output (n_sp = 1), Ki = 16 (n_in = 1), 40.5 expected channels at 8 bits:
    # n_body = 1, k_rem = 8.5
    # iter(32)   = (31 + 6 + 6 + 256 + 2) + 9 + 32 + 13 = 355
    # iter(8.5)  = (31 + 6 + 6 + 68 + 2) + 9 + ceil_div(34, 4) + 13 = 113 + 9 + 9 + 13 = 144
    spec = _spec("conv", (3, 3), (3, 3), 16, [0.0, 0.0, 0.0, 40.5], 16, requires_grad=True)
    cyc = ne16_cycles([spec])
    assert float(cyc.detach()) == 355 + 144
    cyc.backward()
    # d/dKo: floor_div STE -> iter(32) = 355; mod STE -> d iter(k_rem)/dk = 8 (matvec) + 4 (normquant).
    # The floor STE also gives the empty 2- and 4-bit sub-layers the gradient of one full tile,
    # iter(32) = 45 + 32*w + 54 (the reference evaluates every non-zero precision, §5.5).
    assert spec.n_w.grad.tolist() == [0.0, 45 + 64 + 54, 45 + 128 + 54, 355 + 12]
    # d/dKi via n_in = ceil_div(Ki, 16) (STE 1): n_body * 301 + 113
    assert spec.cin_eff.grad.item() == 301 + 113


def test_soft_mass_at_every_precision_pays_a_partial_tile() -> None:
    # 1x1 conv, 3x3 output, Ki = 16: one-hot 32 channels at 8 bits is one full tile (119 cycles);
    # the same 32 channels spread 1/31 over precisions pay three partial tiles (§5.5 k_rem branch)
    one_hot = _spec("conv", (1, 1), (3, 3), 16, [0.0, 0.0, 0.0, 32.0], 16)
    assert float(ne16_cycles([one_hot])) == 119
    soft = _spec("conv", (1, 1), (3, 3), 16, [0.0, 0.5, 0.5, 31.0], 16)
    # iter(k) = 33 + k + 22 + ceil_div(4k, 4):
    #   k = 0.5 -> 33.5 + 22 + 1 = 56.5 (at 2 and at 4 bits); k = 31 -> 33 + 31 + 22 + 31 = 117
    assert float(ne16_cycles([soft])) == pytest.approx(56.5 * 2 + 117)
    # precisions with zero channels cost nothing (k_rem == 0 and n_body == 0)
    zero = _spec("conv", (1, 1), (3, 3), 16, [32.0, 0.0, 0.0, 0.0], 16)
    assert float(ne16_cycles([zero])) == 0.0


def test_one_by_one_latency_ignores_weight_bits() -> None:
    per_w = [float(ne16_cycles([uniform_spec("p", "conv", (1, 1), (8, 8), 32, 64, w)])) for w in (2, 4, 8)]
    assert per_w == [3312.0, 3312.0, 3312.0]  # conv3x of ResNet-8 at any precision
    # 3x3 does depend on w: matvec = 6 + k * w
    per_w3 = [float(ne16_cycles([uniform_spec("c", "conv", (3, 3), (3, 3), 16, 32, w)])) for w in (2, 4, 8)]
    assert per_w3 == [(45 + 64) + 54, (45 + 128) + 54, (45 + 256) + 54]


def test_depthwise_one_by_one_falls_into_standard_formulas() -> None:
    # dw 1x1: is_1x1 is false (dw) and is_dw is false (not 3x3): load 31, matvec 6 + k*w, n_in loop
    spec = _spec("dw", (1, 1), (3, 3), 16, [0.0, 0.0, 0.0, 16.0], 16)
    assert float(ne16_cycles([spec])) == (31 + 6 + 6 + 128 + 2) + 25 + 13
    # dw 3x3 with 48 channels: k_body = 16, 3 tiles, no input loop: 31 + 22 + 134 + 2 + 25 + 13 = 227
    spec = _spec("dw", (3, 3), (3, 3), 48, [0.0, 0.0, 0.0, 48.0], 48)
    assert float(ne16_cycles([spec])) == 3 * 227


def test_lower_cin_lowers_ne16_and_activation_theta_is_ignored() -> None:
    hi = uniform_spec("c", "conv", (3, 3), (16, 16), 64, 32, 8)
    lo = uniform_spec("c", "conv", (3, 3), (16, 16), 64, 32, 8, cin_eff=32)
    assert float(ne16_cycles([lo])) < float(ne16_cycles([hi]))
    a2 = uniform_spec("c", "conv", (3, 3), (16, 16), 64, 32, 8, a_bits=2)
    assert float(ne16_cycles([a2])) == float(ne16_cycles([hi]))


def test_linear_is_a_one_by_one_layer() -> None:
    fc = uniform_spec("fc", "linear", (1, 1), (1, 1), 64, 10, 8)
    conv = uniform_spec("c", "conv", (1, 1), (1, 1), 64, 10, 8)
    assert float(ne16_cycles([fc])) == float(ne16_cycles([conv])) == 204


# ----------------------------------------------------------------------------- check()
def test_check_refuses_non_8bit_activations() -> None:
    cost = NE16Cost()
    cost.check((0, 2, 4, 8), (8,), (8,))
    with pytest.raises(ConfigError, match="activation precision") as e:
        cost.check((0, 2, 4, 8), (2, 4, 8), (8,))
    assert "\n" not in str(e.value) and "(2, 4)" in str(e.value)
    with pytest.raises(ConfigError, match="input activation"):
        cost.check((0, 2, 4, 8), (8,), (4,))
    with pytest.raises(ConfigError, match="weight"):
        cost.check((0, 3, 8), (8,), (8,))


# ----------------------------------------------------------------------------- precision refinement
def test_promote_fills_a_tile_and_keeps_pruned_channels() -> None:
    # 3x3 conv 16 -> 32 at 16x16 (n_sp = 36, n_in = 1), 4 pruned, 2 channels at 2 bits, 26 at 8 bits:
    #   before: 36 * ((45 + 26*8 + 22 + 26) + (45 + 2*2 + 22 + 2)) = 36 * (301 + 73) = 13464
    #   after : 28 at 8 bits: 36 * (45 + 28*8 + 22 + 28) = 36 * 319 = 11484
    spec = _spec("conv", (3, 3), (16, 16), 16, [4.0, 2.0, 0.0, 26.0], 16)
    assert float(ne16_cycles([spec])) == 13464
    out = ne16_promote([spec], [7])
    assert set(out) == {7}
    assert out[7].dtype == torch.int64
    assert out[7].tolist() == [4, 0, 0, 28]
    promoted = _spec("conv", (3, 3), (16, 16), 16, out[7].double().tolist(), 16)
    assert float(ne16_cycles([promoted])) == 11484


def test_promote_leaves_a_group_alone_when_no_move_helps() -> None:
    # 3x3 conv 32 -> 32 (n_in = 2), 16 at 4 bits + 16 at 8 bits:
    #   before: 36 * ((2*(45+64) + 38) + (2*(45+128) + 38)) = 36 * 640; all at 8 bits: 36 * 656; partial moves
    #   of m channels cost 36 * (640 + 8m)
    spec = _spec("conv", (3, 3), (16, 16), 32, [0.0, 0.0, 16.0, 16.0], 32)
    assert ne16_promote([spec], [0])[0].tolist() == [0, 0, 16, 16]


def test_promote_sums_the_cycles_of_a_sharing_group() -> None:
    # conv2y (3x3, 32 -> 32) alone would not promote [0,0,16,16] (+576 cycles), but its group partner
    # conv2x (1x1, 16 -> 32, 1x1 latency independent of w) saves 36 * (2*87 - 119) = 1980 when merged.
    n = [0.0, 0.0, 16.0, 16.0]
    conv2y = _spec("conv", (3, 3), (16, 16), 32, n, 32)
    conv2x = _spec("conv", (1, 1), (16, 16), 16, n, 16)
    other = _spec("conv", (3, 3), (16, 16), 32, n, 32)
    before = ne16_cycles_per_layer([conv2y, conv2x]).tolist()
    assert before == [36 * 640, 36 * 174]
    out = ne16_promote([conv2y, conv2x, other], [1, 1, 2])
    assert out[1].tolist() == [0, 0, 0, 32]
    assert out[2].tolist() == [0, 0, 16, 16]
    a = _spec("conv", (3, 3), (16, 16), 32, [0.0, 0.0, 0.0, 32.0], 32)
    b = _spec("conv", (1, 1), (16, 16), 16, [0.0, 0.0, 0.0, 32.0], 16)
    assert float(ne16_cycles([a, b])) == 23616 + 4284 < sum(before)


def test_promote_rejects_soft_or_inconsistent_groups() -> None:
    soft = _spec("conv", (3, 3), (16, 16), 16, [0.5, 1.5, 0.0, 30.0], 16)
    with pytest.raises(ValueError, match="one-hot"):
        ne16_promote([soft], [0])
    a = _spec("conv", (3, 3), (16, 16), 16, [0.0, 2.0, 0.0, 30.0], 16)
    b = _spec("conv", (3, 3), (16, 16), 16, [0.0, 0.0, 2.0, 30.0], 16)
    with pytest.raises(ValueError, match="different"):
        ne16_promote([a, b], [0, 0])
    with pytest.raises(ValueError, match="entries"):
        ne16_promote([a, b], [0])
