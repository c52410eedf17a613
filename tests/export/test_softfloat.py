"""Integer emulation of float32 add/mul/floor (jpq.export.softfloat) against PyTorch's float32."""

from __future__ import annotations

import pytest
import torch

from jpq.export.softfloat import f32_add, f32_bits, f32_floor, f32_mul


def _spread(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * torch.exp2(torch.randint(-30, 30, (n,), generator=g).float())


def test_add_and_mul_round_like_float32() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = _spread(200_000, g), _spread(200_000, g)
    x[:5] = torch.tensor([0.0, 1.0, 3.0, 2.0**-20, 0.1])
    y[:5] = torch.tensor([0.0, 2.0**-24, 2.0**-23 + 2.0**-40, 2.0**20, 0.2])  # ties and far operands
    bx, by = f32_bits(x), f32_bits(y)
    assert torch.equal(f32_add(bx, by), f32_bits(x + y))
    assert torch.equal(f32_mul(bx, by), f32_bits(x * y))
    assert torch.equal(f32_floor(bx), torch.floor(x).to(torch.int64))


@pytest.mark.parametrize(("s_a", "s_b", "s_out"), [(84.7, 84.7, 84.7), (3.21, 250.3, 17.9), (0.37, 5.1, 2.2)])
def test_pact_of_a_sum_of_codes(s_a: float, s_b: float, s_out: float) -> None:
    """floor(fl(min(fl(q_a / S_a + q_b / S_b), clip) * S)) over every pair of 8-bit codes."""
    sa, sb, so = (float(torch.tensor(v, dtype=torch.float32)) for v in (s_a, s_b, s_out))
    va = torch.arange(256, dtype=torch.float32).div_(sa).view(-1, 1)
    vb = torch.arange(256, dtype=torch.float32).div_(sb).view(1, -1)
    clip = torch.tensor(200.0 / so, dtype=torch.float32)
    want = torch.floor(torch.clamp(va + vb, 0.0, float(clip)).mul_(so)).to(torch.int64)
    x = torch.clamp(f32_add(f32_bits(va), f32_bits(vb)), max=int(f32_bits(clip)))
    assert torch.equal(f32_floor(f32_mul(x, f32_bits(torch.tensor(so)))), want)


def test_refuses_negative_and_subnormal() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        f32_bits(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="subnormal"):
        f32_bits(torch.tensor([1e-40]))
