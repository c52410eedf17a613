"""The fused search step (trainer.search_step=fused, the default) gives the eager step's numbers
(docs/architecture.md, "Fused search step").

Both implementations are checked on the CPU: the C kernels the CPU runs (``native``) and the compiled
tensor code an accelerator runs (``compiled``, torch.compile). The native forward values and ``dL/dx`` are
the eager ones bit for bit, the mixture included (it fuses multiply-add exactly where PyTorch's kernels
do). The compiled mixture may differ from the eager one by one rounding of the sum, so the whole-network
comparison runs in float64, where such a difference cannot move an activation across a level. Clip and
theta gradients are sums, taken in another order: close, not equal.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jpq.cost import get_cost
from jpq.data.base import InputQuant
from jpq.errors import ConfigError
from jpq.models.resnet8 import ResNet8
from jpq.quant import mixed_pact, native
from jpq.quant.activations import pact_levels
from jpq.quant.fused import FusedMixedPact, FusedPact, check_step, pact_kernels
from jpq.search import convert

IMPLS = {"native": (native.NativePact, native.NativeMixedPact), "compiled": (FusedPact, FusedMixedPact)}


def _both(impl: str, x: torch.Tensor, hi: torch.Tensor, theta: torch.Tensor, bits: torch.Tensor, lo=None):
    """Values and gradients (x, hi, theta, lo) of the eager functions, then of ``impl``'s."""
    outs, grads = [], []
    for fused in (False, True):
        xx = x.clone().requires_grad_(True)
        h = hi.clone().requires_grad_(True)
        t = theta.clone().requires_grad_(True)
        lo_ = None if lo is None else lo.clone().requires_grad_(True)
        if not fused:
            out = mixed_pact(xx, h, t, bits, lo_)
        elif len(bits) == 1:
            out = IMPLS[impl][0].apply(xx, lo_, h, pact_levels(bits, x.dtype)[0])
        else:
            out = IMPLS[impl][1].apply(xx, lo_, h, t, pact_levels(bits, x.dtype))
        g = torch.linspace(-1, 1, out.numel(), dtype=x.dtype).reshape(out.shape)
        out.backward(g)
        outs.append(out.detach())
        grads.append([xx.grad, h.grad, t.grad if len(bits) > 1 else None, None if lo_ is None else lo_.grad])
    return outs, grads


@pytest.mark.parametrize("impl", IMPLS)
def test_single_precision_pact_is_bit_identical_with_clip_gradient(impl: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 8, 8) * 4
    x.view(-1)[:5] = torch.tensor([6.0, 0.0, -1.0, 7.0, 5.999])  # on and around the clip
    (a, b), (ga, gb) = _both(impl, x, torch.tensor([6.0]), torch.ones(1), torch.tensor([8]))
    assert torch.equal(a, b)
    assert torch.equal(ga[0], gb[0])  # dL/dx: the upstream grad where 0 < x < clip
    assert torch.allclose(ga[1], gb[1], rtol=1e-5, atol=1e-5)  # dL/dclip: sum where x >= clip


@pytest.mark.parametrize("impl", IMPLS)
def test_signed_pact_matches_eager(impl: str) -> None:
    torch.manual_seed(1)
    x = torch.randn(2, 1, 10, 49) * 3
    lo = torch.tensor([-2.0])
    (a, b), (ga, gb) = _both(impl, x, torch.tensor([2.5]), torch.ones(1), torch.tensor([8]), lo=lo)
    assert torch.equal(a, b)
    assert torch.equal(ga[0], gb[0])
    for i in (1, 3):
        assert torch.allclose(ga[i], gb[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("signed", [False, True])
def test_mixture_of_2_4_8_matches_eager(impl: str, signed: bool) -> None:
    torch.manual_seed(2)
    x = torch.randn(4, 8, 6, 7) * 3  # 1,344 elements: vector loops and their scalar tails
    theta = torch.softmax(torch.tensor([0.25, 0.5, 1.0]), 0)
    lo = torch.tensor([-2.0, -3.0, -1.0]) if signed else None
    (a, b), (ga, gb) = _both(impl, x, torch.tensor([6.0, 5.0, 4.0]), theta, torch.tensor([2, 4, 8]), lo)
    if impl == "native":
        assert torch.equal(a, b) and torch.equal(ga[0], gb[0])
    else:
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
        assert torch.allclose(ga[0], gb[0], rtol=1e-6, atol=1e-7)
    for i in (1, 2, 3) if signed else (1, 2):
        assert torch.allclose(ga[i], gb[i], rtol=1e-5, atol=1e-5)


def test_native_mixture_large_tensor_on_several_threads() -> None:
    """Above the one-thread limit the kernels split the tensor between threads: the same values, and sums
    at least as accurate as the eager float32 ones (checked against float64)."""
    torch.manual_seed(3)
    x = torch.randn(2, 16, 50, 50) * 3  # 80,000 elements
    theta = torch.softmax(torch.tensor([0.1, 0.7, 0.2]), 0)
    args = (torch.tensor([6.0, 5.0, 4.0]), theta, torch.tensor([2, 4, 8]))
    (a, b), (ga, gb) = _both("native", x, *args)
    _, (exact, _) = _both("native", x.double(), *(t.double() for t in args[:2]), args[2])
    assert torch.equal(a, b) and torch.equal(ga[0], gb[0])
    for i in (1, 2):
        err_eager, err_native = (ga[i].double() - exact[i]).abs(), (gb[i].double() - exact[i]).abs()
        assert (err_native <= err_eager + 1e-5 * exact[i].abs()).all(), i
        torch.testing.assert_close(gb[i].double(), exact[i], rtol=2e-6, atol=1e-5)


def test_cpu_tensors_take_the_native_kernels() -> None:
    assert pact_kernels(torch.ones(2)) == IMPLS["native"]
    assert pact_kernels(torch.ones(2, dtype=torch.float64)) == IMPLS["native"]
    assert pact_kernels(torch.ones(2, dtype=torch.float16)) == IMPLS["compiled"]  # no C kernel for it


def _steps_both_ways(
    a_bits: tuple[int, ...], switch: str, strength: float, signed: bool = False,
    dtype: torch.dtype = torch.float64,
) -> tuple[tuple[torch.Tensor, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """Loss and gradients of one ResNet-8 search step (weights {0,2,4,8}) in ``dtype`` with
    ``net.state.<switch>`` False, then True, from the same parameters."""
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32, dtype=dtype) * 2 - (1.0 if signed else 0.0)
    y = torch.tensor([0, 3, 5, 9])
    iq = InputQuant(signed=True, lo=-1.0, hi=1.0) if signed else InputQuant()
    net = convert(ResNet8(), x[:2].float(), w_bits=(0, 2, 4, 8), a_bits=a_bits, input_quant=iq)
    net = net.to(dtype).train()
    cost = get_cost("bitops")
    res = []
    for on in (False, True):
        setattr(net.state, switch, on)
        net.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y) + strength * cost(net.layer_specs())
        loss.backward()
        grads = {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}
        res.append((loss.detach(), grads))
    return res[0], res[1]


@pytest.mark.parametrize("a_bits", [(8,), (2, 4, 8)])
def test_resnet8_step_same_loss_and_gradients(a_bits: tuple[int, ...]) -> None:
    (l0, g0), (l1, g1) = _steps_both_ways(a_bits, "fused", 1e-8)
    assert torch.allclose(l0, l1, rtol=1e-12, atol=0)
    assert g0.keys() == g1.keys() and any(n.endswith("act.alpha") for n in g0) == (len(a_bits) > 1)
    for n in g0:
        assert torch.allclose(g0[n], g1[n], rtol=1e-9, atol=1e-12), n


@pytest.mark.parametrize("a_bits", [(8,), (2, 4, 8)])
def test_resnet8_float32_step_same_loss_and_weight_gradients(a_bits: tuple[int, ...]) -> None:
    """In float32, as jpq trains: the native step's loss is the eager one bit for bit, and so is every
    weight and bias gradient (they flow through the bit-identical dL/dx); the clip and logit gradients
    are sums in another order."""
    (l0, g0), (l1, g1) = _steps_both_ways(a_bits, "fused", 1e-3, dtype=torch.float32)
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys()
    for n in g0:
        if n.endswith(("alpha", "clip_val", "clip_lo")):
            assert torch.allclose(g0[n], g1[n], rtol=1e-3, atol=1e-6), n
        else:
            assert torch.equal(g0[n], g1[n]), n


@pytest.mark.parametrize("a_bits", [(8,), (2, 4, 8)])
@pytest.mark.parametrize("signed", [False, True])
def test_layer_node_step_equals_composed_step(a_bits: tuple[int, ...], signed: bool) -> None:
    """Each layer's weight side as one autograd node (``SamplerState.layer_node``, the default) gives the
    numbers of the composed mixed_weight + quantize_bias (docs/method.md §4)."""
    (l0, g0), (l1, g1) = _steps_both_ways(a_bits, "layer_node", 1e-3, signed)
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys() and any(n.endswith("jpq_groups.0.alpha") for n in g0)
    for n in g0:
        if n.endswith("alpha"):  # several contributions, summed in another order
            assert torch.allclose(g0[n], g1[n], rtol=1e-12, atol=1e-15), n
        else:
            assert torch.equal(g0[n], g1[n]), n


def test_search_step_choice_is_checked() -> None:
    check_step("eager")
    check_step("fused")  # builds the CPU kernels
    with pytest.raises(ConfigError, match="search_step='fast': choose fused or eager"):
        check_step("fast")
