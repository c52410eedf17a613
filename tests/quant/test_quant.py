"""Quantizers against hand-computed cases (docs/method.md §2)."""

from __future__ import annotations

import pytest
import torch

from jpq.quant import act_scale, mixed_pact, mixed_weight, pact, quantize_all, quantize_bias, quantize_weight


def test_p2_grid_round_half_even_and_upper_clip() -> None:
    # m = 1.5 -> range 3, s(2) = 3/3 = 1 exactly: W/s are the values themselves
    w = torch.tensor([[1.5, -1.5, 0.5, -0.5, 1.0, 2.5 / 2]])
    q = quantize_all(w, torch.tensor([2]))[0, 0]
    # +1.5 -> round 2 (half to even) -> clipped to 2^(2-1)-1 = 1;  -1.5 -> -2 (not clipped below)
    # 0.5 -> 0 (half to even), -0.5 -> -0 ; 1.0 -> 1 ; 1.25 -> 1
    assert q.tolist() == [1.0, -2.0, 0.0, 0.0, 1.0, 1.0]


def test_p8_scale_and_grid() -> None:
    w = torch.tensor([[127.5, -127.5, 3.0, 0.25]])  # m = 127.5 -> s = 255/255 = 1
    q = quantize_all(w, torch.tensor([8]))[0, 0]
    assert q.tolist() == [127.0, -128.0, 3.0, 0.0]


def test_p0_is_exact_zero_and_zero_channel_scale() -> None:
    w = torch.tensor([[0.3, -0.2], [0.0, 0.0]])
    q = quantize_all(w, torch.tensor([0, 4]))
    assert torch.equal(q[0], torch.zeros(2, 2))
    # an all-zero channel uses range 1 (no division by zero) and stays zero
    assert torch.equal(q[1, 1], torch.zeros(2))


def test_mixed_weight_is_theta_mixture_and_ste_identity() -> None:
    torch.manual_seed(0)
    w = torch.randn(3, 2, 3, 3, requires_grad=True)
    bits = torch.tensor([0, 2, 4, 8])
    theta = torch.softmax(torch.randn(4, 3), 0).requires_grad_(True)
    out = mixed_weight(w, theta, bits)
    q = quantize_all(w, bits).reshape(4, 3, 2, 3, 3)
    expect = (theta.detach()[:, :, None, None, None] * q).sum(0)
    torch.testing.assert_close(out, expect)
    g = torch.randn_like(out)
    out.backward(g)
    # identity STE for every branch including 0 bits: dL/dW = sum_i theta_i * g = g
    torch.testing.assert_close(w.grad, g)
    # dL/dtheta[i, c] = <g_c, Q_i(W_c)>, 0 for p = 0
    expect_t = (g.unsqueeze(0) * q).flatten(2).sum(-1)
    torch.testing.assert_close(theta.grad, expect_t)
    assert torch.all(theta.grad[0] == 0)


def test_quantize_weight_per_channel_bits() -> None:
    w = torch.tensor([[1.5, -1.5], [127.5, 1.0], [0.7, 0.1]])
    q = quantize_weight(w, [2, 8, 0])
    assert q.tolist() == [[1.0, -2.0], [127.0, 1.0], [0.0, 0.0]]


def test_pact_floor_clip_and_gradients() -> None:
    x = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.9, 3.0, 7.0], requires_grad=True)
    clip = torch.tensor([2.999], requires_grad=True)  # S = 3 / (2.999 + 1e-3) = 1 exactly
    y = mixed_pact(x, clip, torch.ones(1), torch.tensor([2]))
    # floor(S * clamp(x, 0, clip)) / S
    assert y.tolist() == [0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0]
    torch.testing.assert_close(y, pact(x.detach(), 2.999, 2))
    up = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y.backward(up)
    # dy/dx = 1 only strictly inside (0, clip); dy/dclip = sum of upstream where x >= clip
    assert x.grad.tolist() == [0.0, 0.0, 3.0, 4.0, 5.0, 0.0, 0.0]
    assert clip.grad.tolist() == [6.0 + 7.0]


def test_signed_pact_and_mixture_gradients() -> None:
    x = torch.tensor([-7.0, -1.0, 0.4, 6.5], requires_grad=True)
    lo = torch.tensor([-6.0], requires_grad=True)
    hi = torch.tensor([6.0], requires_grad=True)
    y = mixed_pact(x, hi, torch.ones(1), torch.tensor([8]), lo=lo)
    s = 255.0 / (12.0 + 1e-3)
    expect = torch.floor(torch.clamp(x.detach(), -6, 6) * s) / s
    torch.testing.assert_close(y, expect)
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    assert lo.grad.tolist() == [1.0] and hi.grad.tolist() == [1.0]
    # mixture of two precisions: dL/dtheta_j = <g, PACT_j(x)>
    x2 = torch.tensor([0.3, 1.7, 4.0])
    clips = torch.tensor([6.0, 6.0])
    theta = torch.tensor([0.25, 0.75], requires_grad=True)
    out = mixed_pact(x2, clips, theta, torch.tensor([2, 8]))
    p2, p8 = pact(x2, 6.0, 2), pact(x2, 6.0, 8)
    torch.testing.assert_close(out, 0.25 * p2 + 0.75 * p8)
    out.sum().backward()
    torch.testing.assert_close(theta.grad, torch.stack([p2.sum(), p8.sum()]))


def test_bias_quantization_scale_zero_and_ste() -> None:
    b = torch.tensor([0.26, -0.26, 0.3], requires_grad=True)
    s = torch.tensor([0.1, 0.1, 0.0], requires_grad=True)
    bq = quantize_bias(b, s)
    torch.testing.assert_close(bq, torch.tensor([0.3, -0.3, 0.0]))
    bq.sum().backward()
    torch.testing.assert_close(b.grad, torch.tensor([1.0, 1.0, 0.0]))
    # gradient reaches the scale through the final multiplication only: round(b / s)
    torch.testing.assert_close(s.grad, torch.tensor([3.0, -3.0, 0.0]))
    assert act_scale(torch.tensor([6.0]), torch.tensor([8])).item() == pytest.approx(6.0 / 255)


def _reference_mixture(x, lo, hi, theta, bits):
    """PACT mixture written with plain autograd ops and explicit STE masks (§2.2)."""
    out = 0
    for j, b in enumerate(bits):
        lower = lo[j] if lo is not None else torch.zeros(())
        span = hi[j] - lower if lo is not None else hi[j]
        s = (2.0**b - 1) / (span.detach() + 1e-3)
        xc = torch.minimum(torch.maximum(x, lower), hi[j])  # grads: x inside, clip where x beyond
        q = xc + (torch.floor(xc.detach() * s) / s - xc.detach())
        out = out + theta[j] * q
    return out


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [(8,), (2, 4, 8)])
def test_fused_pact_gradients_match_reference(signed: bool, bits: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    p = len(bits)
    x = (torch.randn(4, 3, 5, 5) * 4).requires_grad_(True)
    hi = (torch.rand(p) * 3 + 2).requires_grad_(True)
    lo = (-torch.rand(p) * 3 - 1).requires_grad_(True) if signed else None
    theta = torch.softmax(torch.randn(p), 0).requires_grad_(p > 1)
    up = torch.randn(4, 3, 5, 5)
    out = mixed_pact(x, hi, theta, torch.tensor(bits), lo)
    out.backward(up)
    ins = [x, hi] + ([lo] if signed else []) + ([theta] if p > 1 else [])
    got = [t.grad.clone() for t in ins]
    for t in ins:
        t.grad = None
    ref = _reference_mixture(x, lo, hi, theta, bits)
    torch.testing.assert_close(out, ref)
    ref.backward(up)
    for g, t in zip(got, ins, strict=True):
        torch.testing.assert_close(g, t.grad, rtol=1e-5, atol=1e-5)
