"""Every layer's weight side in one native call per pass (jpq.search.layers.weight_side_ahead,
docs/architecture.md "Fused search step"): the numbers of the per-layer kernels, and when it runs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from jpq.cost import get_cost
from jpq.data.base import InputQuant
from jpq.models.dscnn import DSCNN
from jpq.models.resnet8 import ResNet8
from jpq.quant import native
from jpq.quant.weights import weight_grid
from jpq.search import convert
from jpq.search.net import SearchableNet
from tests.quant.test_layer_params import _case

# (bits, weight shape, theta kind): a searched layer, a 1x1 and a linear one, a layer whose theta needs no
# gradient (one precision), a per-layer search (theta expanded over the channels, not contiguous)
LAYERS = [
    ((0, 2, 4, 8), (64, 64, 3, 3), "softmax"),
    ((0, 2, 4, 8), (32, 16, 1, 1), "softmax"),
    ((2, 4, 8), (10, 64), "softmax"),
    ((8,), (16, 3, 3, 3), "const"),
    ((0, 2, 4, 8), (8, 4, 5), "expanded"),
    ((0, 2, 4, 8), (12, 20), "strided"),  # a weight stored transposed (not contiguous)
]


def _inputs(dtype: torch.dtype):
    out = []
    for i, (bits, shape, kind) in enumerate(LAYERS):
        w, b, alpha, clip = (t.to(dtype).clone().requires_grad_(True) for t in _case(bits, shape, i))
        if kind == "strided":
            w = w.detach().t().contiguous().t().requires_grad_(True)
            assert not w.is_contiguous()
        if kind == "const":
            theta = torch.ones(1, shape[0], dtype=dtype)
        elif kind == "expanded":
            theta = torch.softmax(alpha[:, :1], 0).expand(-1, shape[0])
        else:
            theta = torch.softmax(alpha, 0)
        grid = weight_grid(torch.tensor(bits), dtype)
        out.append((w, b, alpha, clip, theta, (clip / 255.0).reshape(()), grid, int(bits[0] == 0)))
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_net_params_equal_the_per_layer_kernel(dtype: torch.dtype) -> None:
    """W_eff, b_eff and the weight, bias, theta and scale gradients of all layers in one call are those of
    NativeLayerParams layer by layer, bit for bit (the same C routine per layer)."""
    results = []
    for whole in (False, True):
        ins = _inputs(dtype)
        if whole:
            plan = native.NetPlan(
                [(len(g.levels), w.shape[0], w[0].numel()) for w, _b, _a, _c, _t, _s, g, _k in ins],
                [(g.levels, g.upper, g.nonzero, k) for *_, g, k in ins],
            )
            cols = list(zip(*[(w, b, t, s) for w, b, _a, _c, t, s, _g, _k in ins], strict=True))
            out = native.NativeNetParams.apply(plan, *cols[0], *cols[1], *cols[2], *cols[3])
            pairs = list(zip(out[: len(ins)], out[len(ins) :], strict=True))
        else:
            pairs = [native.NativeLayerParams.apply(w, b, t, s, g.levels, g.upper, g.nonzero, k)
                     for w, b, _a, _c, t, s, g, k in ins]
        gen = torch.Generator().manual_seed(3)
        loss = sum((wq * torch.randn(wq.shape, generator=gen, dtype=dtype)).sum()
                   + (bq * torch.randn(bq.shape, generator=gen, dtype=dtype)).sum() for wq, bq in pairs)
        loss.backward()
        results.append([(wq.detach(), bq.detach(), w.grad, b.grad, a.grad, c.grad)
                        for (wq, bq), (w, b, a, c, *_rest) in zip(pairs, ins, strict=True)])
    for i, (per_layer, whole) in enumerate(zip(*results, strict=True)):
        for j, (x, y) in enumerate(zip(per_layer, whole, strict=True)):
            assert (x is None) == (y is None), (i, j)
            assert x is None or torch.equal(x, y), (i, j)
    assert results[1][3][4] is None  # one precision: no theta gradient
    assert results[1][0][4].abs().sum() > 0


def _step(net: SearchableNet, x: torch.Tensor, y: torch.Tensor):
    torch.manual_seed(1)  # the same dropout masks (DS-CNN)
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y) + 1e-3 * get_cost("bitops")(net.stacked_specs())
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("model", ["resnet8", "dscnn"])
@pytest.mark.parametrize("a_bits", [(8,), (2, 4, 8)])
def test_step_equals_the_per_layer_path(model: str, a_bits: tuple[int, ...],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A float32 search step with the weight side computed ahead gives the per-layer path's loss and
    weight, bias and clip gradients bit for bit; logit gradients that sum several contributions (members
    of a group, consumers of an activation) may differ in rounding."""
    torch.manual_seed(0)
    if model == "resnet8":
        x, seed, iq = torch.rand(4, 3, 32, 32), ResNet8(), InputQuant()
    else:
        x, seed, iq = torch.randn(4, 1, 49, 10) * 3, DSCNN(), InputQuant(signed=True, lo=-6.0, hi=6.0)
    y = torch.tensor([0, 3, 5, 9])
    net = convert(seed, x[:2], w_bits=(0, 2, 4, 8), a_bits=a_bits, input_quant=iq, fused=True).train()
    assert net._ahead_layers()
    calls = []
    apply = native.NativeNetParams.apply
    monkeypatch.setattr(native.NativeNetParams, "apply", lambda *a: calls.append(1) or apply(*a))
    l1, g1 = _step(net, x, y)
    assert calls == [1]
    monkeypatch.setattr(SearchableNet, "_ahead_layers", lambda self: [])
    l0, g0 = _step(net, x, y)
    assert calls == [1]
    assert torch.equal(l0, l1)
    assert g0.keys() == g1.keys() and any(n.endswith("alpha") for n in g0)
    for n in g0:
        if n.endswith("alpha"):
            torch.testing.assert_close(g0[n], g1[n], rtol=1e-5, atol=1e-7, msg=n)
        else:
            assert torch.equal(g0[n], g1[n]), n


def test_nothing_is_left_after_a_pass_even_a_failed_one() -> None:
    torch.manual_seed(0)
    net = convert(ResNet8(), torch.rand(2, 3, 32, 32), w_bits=(0, 2, 4, 8), a_bits=(2, 4, 8),
                  input_quant=InputQuant(), fused=True).train()
    layers = net._ahead_layers()
    quants = [q for q in net.modules() if hasattr(q, "step_theta")]
    assert len(layers) == 10 and quants
    net(torch.rand(2, 3, 32, 32))
    with pytest.raises(RuntimeError):
        net(torch.rand(2, 5, 32, 32))  # wrong channel count: the first conv fails
    assert all(layer.step_params is None for layer in layers)
    assert all(q.step_theta is None for q in quants)


def test_when_the_weight_side_runs_ahead() -> None:
    """Only for the fused step on the CPU with autograd on, a deterministic sampler (or a discrete net)
    and quantizing layers; Gumbel draws keep their per-call order, PIT masks its float weights."""
    x = torch.rand(2, 3, 32, 32)

    def net(**kw) -> SearchableNet:
        return convert(ResNet8(), x, w_bits=(0, 2, 4, 8), a_bits=(8,), input_quant=InputQuant(), **kw).train()

    assert net(fused=True)._ahead_layers()
    assert net(fused=True, sampler="hard")._ahead_layers()
    assert not net(fused=False)._ahead_layers()
    gumbel = net(fused=True, sampler="gumbel")
    assert not gumbel._ahead_layers()
    assert gumbel.discretize()._ahead_layers()
    with torch.no_grad():
        assert not net(fused=True)._ahead_layers()
    assert net(fused=True).double()._ahead_layers()  # float64 runs the kernels too
    assert not net(fused=True, pit=True)._ahead_layers()
