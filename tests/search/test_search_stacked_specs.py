"""``SearchableNet.stacked_specs`` (the search step's cost term) equals what the cost models make of
``layer_specs``: the same stacked fields, the same cost under every model, the same logit gradients up
to summation order (docs/method.md §5.1)."""

from __future__ import annotations

import pytest
import torch

from jpq.cost import get_cost
from jpq.cost.registry import stack_specs
from jpq.data.base import InputQuant
from jpq.models import DSCNN, DigitsCNN, ResNet8
from jpq.search import convert

CASES = {
    "resnet8-a8": (ResNet8, (3, 32, 32), (8,), InputQuant(), False),
    "resnet8-a248": (ResNet8, (3, 32, 32), (2, 4, 8), InputQuant(), False),
    "dscnn-signed-input": (DSCNN, (1, 49, 10), (2, 4, 8), InputQuant(signed=True, lo=-6.0, hi=6.0, bits=(8,)),
                           False),
    "digits-flatten": (DigitsCNN, (1, 8, 8), (8,), InputQuant(), False),
    "digits-pit": (DigitsCNN, (1, 8, 8), (8,), None, True),
}


def _net(case: str):
    model, shape, a_bits, iq, pit = CASES[case]
    torch.manual_seed(0)
    x = torch.rand(2, *shape)
    net = convert(model(), x, w_bits=(0, 2, 4, 8), a_bits=a_bits, input_quant=iq, pit=pit)
    for g in net.groups:  # logits away from the initial ones, so that every field carries a gradient
        with torch.no_grad():
            g.alpha.add_(torch.randn_like(g.alpha))
    net.train()
    net(x)
    return net


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fresh", [False, True])
def test_stacked_specs_equal_stacked_layer_specs(case: str, fresh: bool) -> None:
    net = _net(case)
    old, new = stack_specs(net.layer_specs(fresh=fresh)), net.stacked_specs(fresh=fresh)
    assert new.key == old.key and new.static is old.static
    for field in ("n_w", "cin_eff", "a_in"):
        a, b = getattr(old, field), getattr(new, field)
        assert a.dtype == b.dtype and torch.equal(a, b), field


@pytest.mark.parametrize("case", ["resnet8-a8", "resnet8-a248", "dscnn-signed-input", "digits-pit"])
def test_costs_and_gradients_through_stacked_specs(case: str) -> None:
    net = _net(case)
    alphas = [p for n, p in net.named_parameters() if n.endswith("alpha") and p.requires_grad]
    names = ("size", "bitops", "mpic", "ne16") if CASES[case][2] == (8,) else ("size", "bitops", "mpic")
    for name in names:
        cost = get_cost(name)
        c_old, c_new = cost(net.layer_specs()), cost(net.stacked_specs())
        assert torch.equal(c_old, c_new), name
        g_old = torch.autograd.grad(c_old, alphas, retain_graph=True, allow_unused=True)
        g_new = torch.autograd.grad(c_new, alphas, retain_graph=True, allow_unused=True)
        for a, b in zip(g_old, g_new, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # float32 sums, other order
