"""The one-node weight side of a searchable layer (jpq.quant.params) equals the composition of
mixed_weight and quantize_bias bit for bit, values and every gradient (docs/method.md §2.1, §2.3, §4)."""

from __future__ import annotations

import pytest
import torch

from jpq.quant import mixed_pact, mixed_weight, quantize_bias
from jpq.quant.params import mixed_layer_params
from jpq.quant.weights import grid_scales, weight_grid


def _composed(w, b, theta, s_a, bits):
    grid = weight_grid(bits, w.dtype)
    scales = grid_scales(w, grid)
    wq = mixed_weight(w, theta, bits, grid=grid, scales=scales)
    s_w = (theta * scales.squeeze(-1)).sum(0)
    return wq, quantize_bias(b, s_a * s_w)


def _case(bits: tuple[int, ...], shape: tuple[int, ...], seed: int):
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(*shape, generator=gen) * 0.3
    w[1] = 0.0  # an all-zero channel (range 1)
    b = torch.randn(shape[0], generator=gen)
    alpha = torch.randn(len(bits), shape[0], generator=gen)
    alpha[:, 2] = torch.tensor([9.0] + [-9.0] * (len(bits) - 1))  # a (nearly) pruned channel
    clip = torch.tensor(3.0 + seed)
    return w, b, alpha, clip


@pytest.mark.parametrize("bits", [(0, 2, 4, 8), (2, 4, 8), (0, 8), (8,)])
@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (10, 64), (8, 1, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_layer_params_equal_composition(bits, shape, seed) -> None:
    results = []
    for fused_node in (False, True):
        w, b, alpha, clip = (t.clone().requires_grad_(True) for t in _case(bits, shape, seed))
        theta = torch.softmax(alpha, 0)
        s_a = clip / 255.0
        bits_t = torch.tensor(bits)
        if fused_node:
            wq, bq = mixed_layer_params(w, b, theta, s_a, weight_grid(bits_t), bits[0] == 0)
        else:
            wq, bq = _composed(w, b, theta, s_a, bits_t)
        gen = torch.Generator().manual_seed(7)
        gw, gb = torch.randn(wq.shape, generator=gen), torch.randn(bq.shape, generator=gen)
        loss = (wq * gw).sum() + (bq * gb).sum()
        loss.backward()
        results.append((wq.detach(), bq.detach(), w.grad, b.grad, alpha.grad, clip.grad))
    for old, new in zip(*results, strict=True):
        assert torch.equal(old, new)


def test_layer_params_without_theta_gradient() -> None:
    w, b, _, _ = _case((0, 2, 4, 8), (4, 6), 0)
    w.requires_grad_(True)
    theta = torch.eye(4)  # a one-hot assignment, no gradient (fine-tune)
    grid = weight_grid(torch.tensor([0, 2, 4, 8]))
    wq, bq = mixed_layer_params(w, b, theta, torch.tensor(0.01), grid, True)
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # identity STE, sum(theta) = 1
    assert torch.equal(wq[0], torch.zeros(6))  # channel 0 is pruned


def test_layer_params_reject_bad_theta() -> None:
    with pytest.raises(ValueError, match=r"theta shape \(3, 4\) != \(P=4, C=4\)"):
        mixed_layer_params(torch.ones(4, 2), torch.ones(4), torch.ones(3, 4), torch.ones(()),
                           weight_grid(torch.tensor([0, 2, 4, 8])), True)


def _pact_reference(x, lo, hi, level):
    """PACT as plain tensor code (§2.2): values and autograd gradients to x and the clips."""
    span = hi if lo is None else hi - lo
    s = level / (span.detach() + 1e-3)
    low = torch.zeros_like(hi) if lo is None else lo
    v = (torch.floor(torch.clamp(x, low, hi) * s) / s).detach()
    inside, above, below = ((x > low) & (x < hi)), x >= hi, x <= low
    return v + (x - x.detach()) * inside + (hi - hi.detach()) * above + (low - low.detach()) * below


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 8])
def test_single_pact_cpu_path_equals_tensor_expression(signed: bool, bits: int) -> None:
    gen = torch.Generator().manual_seed(bits)
    x0 = torch.randn(4, 3, 5, 5, generator=gen) * 4
    x0[0, 0, 0, :2] = torch.tensor([2.7, -1.3])  # exactly at the clips
    g = torch.randn(x0.shape, generator=gen)
    out = []
    for fast in (True, False):
        x = x0.clone().requires_grad_(True)
        hi = torch.tensor([2.7], requires_grad=True)
        lo = torch.tensor([-1.3], requires_grad=True) if signed else None
        level = torch.tensor(2.0**bits - 1)
        if fast:
            y = mixed_pact(x, hi, torch.ones(1), torch.tensor([bits]), lo)
        else:
            y = _pact_reference(x, lo, hi, level)
        (y * g).sum().backward()
        out.append((y.detach(), x.grad, hi.grad, None if lo is None else lo.grad))
    fast_out, ref = out
    assert torch.equal(fast_out[0], ref[0]) and torch.equal(fast_out[1], ref[1])
    torch.testing.assert_close(fast_out[2], ref[2], rtol=1e-6, atol=1e-6)  # sums in another order
    if signed:
        torch.testing.assert_close(fast_out[3], ref[3], rtol=1e-6, atol=1e-6)
