"""The eager search step with each layer's weight side as one autograd node (``SamplerState.layer_node``,
the default) gives the numbers of the composed mixed_weight + quantize_bias (docs/method.md §4)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jpq.cost import get_cost
from jpq.data.base import InputQuant
from jpq.models.resnet8 import ResNet8
from jpq.search import convert


@pytest.mark.parametrize("a_bits", [(8,), (2, 4, 8)])
@pytest.mark.parametrize("signed", [False, True])
def test_layer_node_step_equals_composed_step(a_bits: tuple[int, ...], signed: bool) -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32, dtype=torch.float64) * 2 - (1.0 if signed else 0.0)
    y = torch.tensor([0, 3, 5, 9])
    iq = InputQuant(signed=True, lo=-1.0, hi=1.0) if signed else InputQuant()
    net = convert(ResNet8(), x[:2].float(), w_bits=(0, 2, 4, 8), a_bits=a_bits, input_quant=iq)
    net = net.double().train()
    cost = get_cost("bitops")
    res = []
    for node in (False, True):
        net.state.layer_node = node
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y) + 1e-3 * cost(net.layer_specs())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        res.append((loss.detach(), grads))
    (l0, g0), (l1, g1) = res
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys() and any(n.endswith("jpq_groups.0.alpha") for n in g0)
    for n in g0:
        if n.endswith("alpha"):  # several contributions, summed in another order
            assert torch.allclose(g0[n], g1[n], rtol=1e-12, atol=1e-15), n
        else:
            assert torch.equal(g0[n], g1[n]), n
