"""The integer forms of the quantizers (docs/method.md §2): what the export writes is what the search runs.

Hand-computed values at scales that are exact in binary, and bit-for-bit equality with the fake-quantizers.
"""

from __future__ import annotations

import pytest
import torch

from jpq.quant import channel_scales, mixed_pact, quantize_bias, quantize_weight
from jpq.quant.activations import fixed_pact, pact_scale
from jpq.quant.bias import bias_integers
from jpq.quant.weights import weight_integers


def _scales(w: torch.Tensor, bits: list[int]) -> torch.Tensor:
    """``s_c(p_c)`` per output channel (0 for p = 0)."""
    all_s = channel_scales(w, torch.tensor(bits)).squeeze(-1)  # (P = C, C)
    return all_s.diagonal().clone()


def test_weight_integers_golden() -> None:
    # row 0: 2 bits, max 0.75 -> s = 1.5 / 3 = 0.5; row 1: 4 bits, max 0.9375 -> s = 1.875 / 15 = 0.125;
    # row 2: pruned (0 bits, s = 0)
    w = torch.tensor(
        [[0.75, -0.75, 0.2, -0.3], [0.9375, 0.3, -0.9375, 0.0625], [0.5, -0.1, 0.2, 0.3]], dtype=torch.float64
    )
    bits = [2, 4, 0]
    s = _scales(w, bits)
    assert s.tolist() == [0.5, 0.125, 0.0]
    q = weight_integers(w, bits, s)
    # 1.5 -> 2 (half to even) clipped to 2^1 - 1 = 1; -1.5 -> -2; 7.5 -> 8 clipped to 7; -7.5 -> -8; 0.5 -> 0
    assert q.tolist() == [[1, -2, 0, -1], [7, 2, -8, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weight_integers_times_scale_is_the_fake_quant_weight(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(12, 3, 3, 3, generator=g, dtype=dtype)
    bits = [8, 4, 2, 0, 8, 2, 2, 4, 0, 8, 4, 2]
    s = _scales(w, bits)
    q = weight_integers(w, bits, s)
    assert torch.equal(q, q.round())
    assert torch.equal(q * s.view(-1, 1, 1, 1), quantize_weight(w, bits))
    for c, b in enumerate(bits):  # within the two's-complement range of the precision
        if b:
            assert -(2 ** (b - 1)) <= int(q[c].min()) and int(q[c].max()) <= 2 ** (b - 1) - 1


def test_bias_integers_golden_and_equal_to_quantize_bias() -> None:
    b = torch.tensor([0.25, -0.8, 1.0, 5.0, -3.0])
    s_b = torch.tensor([0.5, 0.5, 0.5, 0.0, 1e-9])  # the last two are ~0: a pruned channel's bias is 0
    assert bias_integers(b, s_b).tolist() == [0.0, -2.0, 2.0, 0.0, 0.0]  # 0.5 -> 0 (half to even)
    g = torch.Generator().manual_seed(1)
    b, s_b = torch.randn(64, generator=g), torch.rand(64, generator=g) * 1e-2
    s_b[::7] = 0.0
    assert torch.equal(bias_integers(b, s_b) * s_b, quantize_bias(b, s_b))


def test_pact_scale_golden() -> None:
    assert float(pact_scale(torch.tensor(255.0), torch.tensor(6.0), torch.tensor(-6.0))) == pytest.approx(
        255 / 12.001, rel=1e-7
    )
    assert float(pact_scale(torch.tensor(3.0), torch.tensor(1.0))) == pytest.approx(3 / 1.001, rel=1e-7)


def test_fixed_pact_levels_golden() -> None:
    x = torch.tensor([-1.0, 0.2, 0.5, 0.9, 2.0])
    hi, levels = torch.tensor(1.0), torch.tensor(3.0)
    y = fixed_pact(x, hi, levels)
    # S = 3 / 1.001: clamp to [0, 1], then floor(S x) = 0, 0, 1, 2, 2
    assert torch.round(y * pact_scale(levels, hi)).tolist() == [0.0, 0.0, 1.0, 2.0, 2.0]


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fixed_pact_is_single_precision_mixed_pact(signed: bool, bits: int) -> None:
    g = torch.Generator().manual_seed(bits)
    x = 4.0 * torch.randn(2, 3, 17, 5, generator=g)
    hi = torch.tensor([2.7])
    lo = torch.tensor([-1.3]) if signed else None
    ref = mixed_pact(x, hi, torch.ones(1), torch.tensor([bits]), lo)
    out = fixed_pact(x, hi[0], torch.tensor(2.0**bits - 1.0), None if lo is None else lo[0])
    assert torch.equal(out, ref)
