"""Conversion: BN folding, sharing groups, exact quantized forward, effective channels (§1-§5)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from jpq.cost import get_cost
from jpq.data.base import InputQuant
from jpq.errors import UnsupportedModelError
from jpq.models.digits import DigitsCNN
from jpq.quant import pact, quantize_weight
from jpq.search import convert
from jpq.search.convert import _fold_bn


class TinyRes(nn.Module):
    """stem -> [conv-bn-relu, conv-bn] + identity add -> relu -> dw -> pw(stride) + 1x1 shortcut add -> fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.relu0 = nn.ReLU()
        self.c1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.relu2 = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 12, 1, stride=2)
        self.short = nn.Conv2d(8, 12, 1, stride=2)
        self.relu3 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu0(self.bn0(self.stem(x)))
        y = self.relu1(self.bn1(self.c1(x)))
        y = self.bn2(self.c2(y))
        x = self.relu2(x + y)
        z = self.pw(self.dw(x))
        x = self.relu3(z + self.short(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def _randomize_bn(m: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.2)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)


def test_bn_folding_preserves_outputs() -> None:
    torch.manual_seed(0)
    m = TinyRes().eval()
    _randomize_bn(m)
    x = torch.randn(4, 3, 8, 8)
    ref = m(x)
    gm = fx.symbolic_trace(m)
    _fold_bn(gm)
    assert not any(isinstance(mod, nn.BatchNorm2d) for mod in gm.modules())
    torch.testing.assert_close(gm(x), ref, atol=1e-5, rtol=1e-5)


def test_sharing_groups_residual_and_depthwise() -> None:
    net = convert(TinyRes(), torch.randn(2, 3, 8, 8))
    groups = {g.members: g for g in net.groups}
    assert set(groups) == {("stem", "c2", "dw"), ("c1",), ("pw", "short"), ("fc",)}
    assert groups[("fc",)].is_output and groups[("fc",)].w_bits == (2, 4, 8)
    assert not groups[("stem", "c2", "dw")].is_output and groups[("pw", "short")].w_bits == (0, 2, 4, 8)
    # the add output is re-quantized by its group's quantizer
    assert "jpq_add_act_add" in dict(net.net.named_modules())


def _digits_net(**kw) -> tuple[nn.Module, object]:
    torch.manual_seed(1)
    m = DigitsCNN().eval()
    _randomize_bn(m)
    return m, convert(m, torch.rand(2, 1, 8, 8), **kw)


def test_one_hot_8bit_reproduces_plain_qat_layer_exactly() -> None:
    m, net = _digits_net(w_bits=(8,), a_bits=(8,))
    net.eval()
    x = torch.rand(3, 1, 8, 8)
    # hand-built 8-bit QAT network from the same folded weights
    gm = fx.symbolic_trace(m)
    _fold_bn(gm)
    mods = dict(gm.named_modules())
    conv_in_clip = 1.0
    h = pact(x, conv_in_clip, 8)
    s_in = conv_in_clip / 255.0
    for name, stride in (("conv1", 1), ("conv2", 2), ("conv3", 1)):
        w = mods[name].weight.detach()
        wq = quantize_weight(w, [8] * w.shape[0])
        s_w = 2 * w.flatten(1).abs().amax(1) / 255.0
        s_b = s_in * s_w
        bq = torch.round(mods[name].bias.detach() / s_b) * s_b
        h = pact(F.conv2d(h, wq, bq, stride=stride, padding=1), 6.0, 8)
        s_in = 6.0 / 255.0
    h = torch.flatten(F.avg_pool2d(h, 2), 1)
    w = mods["fc"].weight.detach()
    s_b = s_in * 2 * w.abs().amax(1) / 255.0
    ref = F.linear(h, quantize_weight(w, [8] * 10), torch.round(mods["fc"].bias.detach() / s_b) * s_b)
    torch.testing.assert_close(net(x), ref, atol=1e-6, rtol=1e-6)  # up to float op order


def test_pruned_channel_is_zero_downstream_and_shrinks_consumer_inputs() -> None:
    _, net = _digits_net()
    g1 = net.groups[1]  # conv2, 32 channels
    with torch.no_grad():
        g1.alpha[0, 5] = 10.0  # channel 5 -> 0 bits
    net.eval()
    captured = {}
    net.net.conv2.register_forward_hook(lambda mod, i, o: captured.setdefault("y", o))
    net(torch.rand(4, 1, 8, 8))
    assert torch.count_nonzero(captured["y"][:, 5]) == 0
    specs = {s.name: s for s in net.layer_specs(fresh=True)}
    assert float(specs["conv3"].cin_eff) == 31.0
    assert float(specs["conv2"].n_w[0]) == 1.0
    # size cost at one-hot = the closed form sum_l Cin_eff * k^2 * sum_c bits
    size = float(get_cost("size")(list(specs.values())))
    expect = 1 * 9 * 16 * 8 + 16 * 9 * 31 * 8 + 31 * 9 * 32 * 8 + (4 * 32) * 10 * 8
    assert size == pytest.approx(expect, rel=1e-6)


def test_cost_gradient_reaches_previous_layer_alphas() -> None:
    _, net = _digits_net()
    net.train()
    net(torch.rand(4, 1, 8, 8))
    cost = get_cost("size")(net.layer_specs())  # jpq default: effective input channels keep their gradient
    cost.backward()
    g0 = net.groups[0].alpha.grad  # conv1's logits: its 0-bit row also shrinks conv2's inputs
    assert g0 is not None and torch.all(g0[0] < 0) and torch.all(g0[3] > 0)
    # the detached (reference) variant: the 0-bit logits only feel their own layer (no 0-bit cost there)
    net.zero_grad()
    net(torch.rand(4, 1, 8, 8))
    get_cost("size", detach_cin=True)(net.layer_specs()).backward()
    g0d = net.groups[0].alpha.grad
    assert torch.all(g0d[0] < 0) and torch.all(g0d[0] > g0[0])


def test_shared_groups_get_identical_assignment_and_discretize() -> None:
    torch.manual_seed(0)
    net = convert(TinyRes(), torch.randn(2, 3, 8, 8))
    cost = get_cost("size")
    opt_a = torch.optim.SGD(net.arch_parameters(), lr=0.5)
    opt_w = torch.optim.Adam(net.weight_parameters(), lr=1e-3)
    net.train()
    for _ in range(3):
        x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 5, (8,))
        loss = F.cross_entropy(net(x), y) + 3.0 * cost(net.layer_specs()) / 1e4
        opt_a.zero_grad()
        opt_w.zero_grad()
        loss.backward()
        opt_a.step()
        opt_w.step()
    net.discretize().eval()
    arch = net.arch()
    by_name = {layer["name"]: layer for layer in arch["layers"]}
    assert by_name["pw"]["w_bits_counts"] == by_name["short"]["w_bits_counts"]
    assert (
        by_name["stem"]["w_bits_counts"] == by_name["c2"]["w_bits_counts"] == by_name["dw"]["w_bits_counts"]
    )
    assert all(not p.requires_grad for p in net.arch_parameters())
    out1 = net(torch.ones(2, 3, 8, 8))
    net.train()
    torch.testing.assert_close(net(torch.ones(2, 3, 8, 8)), out1)  # frozen argmax in train mode too


def test_signed_input_quantizer() -> None:
    net = convert(
        DigitsCNN(), torch.rand(2, 1, 8, 8), input_quant=InputQuant(signed=True, lo=-6, hi=6, bits=(8,))
    )
    assert net.input_quant.signed and net.input_quant.bits == (8,)
    x = torch.tensor([-7.0, 0.0, 7.0])
    y = net.input_quant(x).detach()
    scale = 255.0 / (12.0 + 1e-3)  # floor with no zero point: -6 maps to floor(-127.49) = -128 steps
    torch.testing.assert_close(y, torch.tensor([-128.0, 0.0, 127.0]) / scale)


class Bad(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sigmoid(self.c(x)).mean((2, 3)))


def test_bad_inputs_have_clear_errors() -> None:
    with pytest.raises(UnsupportedModelError, match="sigmoid"):
        convert(Bad(), torch.rand(1, 1, 8, 8))
    with pytest.raises(UnsupportedModelError, match="does not fit"):
        convert(DigitsCNN(), torch.rand(1, 3, 8, 8))
    grouped = nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedModelError, match="grouped convolution"):
        convert(grouped, torch.rand(1, 4, 3, 3))


class Net1d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(2, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm1d(6)
        self.relu = nn.ReLU()
        self.c2 = nn.Conv1d(6, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.c2(self.relu(self.bn(self.c1(x)))), 1))


def test_conv1d_is_searchable() -> None:
    net = convert(Net1d().eval(), torch.randn(2, 2, 8))
    specs = {s.name: s for s in net.layer_specs(fresh=True)}
    assert specs["c1"].kernel == (3, 1) and specs["c1"].out_hw == (8, 1)
    assert specs["c2"].out_hw == (3, 1) and float(specs["fc"].cin_eff) == 12.0  # flatten: 4 channels x 3
    assert get_cost("size")(list(specs.values())).item() == (2 * 3 * 6 + 6 * 3 * 4) * 8 + 12 * 3 * 8
    assert net(torch.randn(5, 2, 8)).shape == (5, 3)
