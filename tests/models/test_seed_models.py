"""Seed networks against the numbers of docs/benchmarks.md §2.4, §3.4, §4.3, and their fx-friendly graphs."""

from __future__ import annotations

import math
import operator

import pytest
import torch
from torch import fx, nn

from jpq.models import DSCNN, ResNet8, ResNet18, count_macs, count_params, count_weights
from jpq.models.counting import _layer_macs

INPUT_SHAPES: dict[type[nn.Module], tuple[int, int, int]] = {
    ResNet8: (3, 32, 32), DSCNN: (1, 49, 10), ResNet18: (3, 64, 64),
}


@pytest.fixture(scope="module")
def resnet18() -> ResNet18:
    torch.manual_seed(0)
    return ResNet18()


def _per_layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs of each conv/linear by qualified name, from one batch-1 forward."""
    got: dict[str, int] = {}
    handles = [
        mod.register_forward_hook(lambda m, _i, o, name=name: got.__setitem__(name, _layer_macs(m, o)))
        for name, mod in model.named_modules() if isinstance(mod, nn.Conv2d | nn.Linear)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return got


def _weights_under(model: nn.Module, prefix: str) -> int:
    return sum(m.weight.numel() for n, m in model.named_modules()
               if n.startswith(prefix) and isinstance(m, nn.Conv2d | nn.Linear))


# ---------------------------------------------------------------- ResNet-8 (§2.4)

def test_resnet8_totals_names_shapes() -> None:
    m = ResNet8()
    assert count_params(m) == 78_058
    assert count_weights(m) == 77_360
    assert count_macs(m, (3, 32, 32)) == 12_501_632
    assert m.training  # count_macs restores the mode
    keys = set(m.state_dict())
    for k in ("inputblock.conv1.weight", "inputblock.bn.running_var", "convblock1.conv1.weight",
              "convblock1.bn.weight", "conv1.weight", "conv1.bias", "bn1.weight", "convblock2.conv1.weight",
              "convblock2.bn.bias", "conv2y.weight", "conv2y.bias", "bn2.bias", "conv2x.weight",
              "conv2x.bias",
              "convblock3.conv1.weight", "convblock3.bn.weight", "conv3y.bias", "bn3.running_mean",
              "conv3x.weight", "conv3x.bias", "out.weight", "out.bias"):
        assert k in keys, k
    # reference quirks: ConvBlock convs bias-free, no BN on the 1x1 shortcuts
    assert "inputblock.conv1.bias" not in keys and "convblock2.conv1.bias" not in keys
    assert not any(k.startswith(("bn2x", "bn3x")) for k in keys)
    assert isinstance(m.avgpool, nn.AvgPool2d) and m.avgpool.kernel_size == 8
    assert m(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert m.eval()(torch.rand(1, 3, 32, 32)).shape == (1, 10)
    assert ResNet8(num_classes=7, in_channels=1)(torch.rand(3, 1, 32, 32)).shape == (3, 7)


def test_resnet8_per_layer_macs_and_weights() -> None:
    m = ResNet8()
    assert _per_layer_macs(m, (3, 32, 32)) == {
        "inputblock.conv1": 442_368, "convblock1.conv1": 2_359_296, "conv1": 2_359_296,
        "convblock2.conv1": 1_179_648, "conv2y": 2_359_296, "conv2x": 131_072,
        "convblock3.conv1": 1_179_648, "conv3y": 2_359_296, "conv3x": 131_072, "out": 640,
    }
    weights = {n: w.weight.numel() for n, w in m.named_modules() if isinstance(w, nn.Conv2d | nn.Linear)}
    assert weights == {
        "inputblock.conv1": 432, "convblock1.conv1": 2_304, "conv1": 2_304, "convblock2.conv1": 4_608,
        "conv2y": 9_216, "conv2x": 512, "convblock3.conv1": 18_432, "conv3y": 36_864, "conv3x": 2_048,
        "out": 640,
    }


def test_resnet8_init_is_kaiming_fan_in() -> None:
    torch.manual_seed(0)
    m = ResNet8()
    # std = sqrt(2 / fan_in): conv3y fan_in 64*9 = 576, out fan_in 64
    assert m.conv3y.weight.std().item() == pytest.approx(math.sqrt(2 / 576), rel=0.03)
    assert m.convblock3.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 288), rel=0.03)
    assert m.out.weight.std().item() == pytest.approx(math.sqrt(2 / 64), rel=0.1)
    assert torch.equal(m.bn3.weight, torch.ones(64)) and torch.equal(m.bn3.bias, torch.zeros(64))


# ---------------------------------------------------------------- DS-CNN (§3.4)

def test_dscnn_totals_names_shapes() -> None:
    m = DSCNN()
    assert count_params(m) == 23_756
    assert count_weights(m) == 22_016
    assert count_macs(m, (1, 49, 10)) == 2_656_768
    keys = set(m.state_dict())
    for k in ("inputlayer.weight", "inputlayer.bias", "bn.running_mean", "out.weight", "out.bias"):
        assert k in keys, k
    for i in range(1, 5):
        for k in (f"depthwise{i}.weight", f"depthwise{i}.bias", f"bn{i}1.weight", f"pointwise{i}.weight",
                  f"pointwise{i}.bias", f"bn{i}2.running_var"):
            assert k in keys, k
    assert m.depthwise2.groups == 64 and m.inputlayer.stride == (2, 2) and m.inputlayer.padding == (5, 1)
    assert [d.p for d in m.modules() if isinstance(d, nn.Dropout)] == [0.2, 0.4]
    assert all(b.momentum == 0.99 for b in m.modules() if isinstance(b, nn.BatchNorm2d))
    assert m.avgpool.kernel_size == (25, 5)
    assert m.eval()(torch.rand(3, 1, 49, 10)).shape == (3, 12)
    assert m.eval()(torch.rand(1, 1, 49, 10)).shape == (1, 12)


def test_dscnn_per_layer_macs() -> None:
    got = _per_layer_macs(DSCNN(), (1, 49, 10))
    want = {"inputlayer": 320_000, "out": 768}
    for i in range(1, 5):
        want |= {f"depthwise{i}": 72_000, f"pointwise{i}": 512_000}
    assert got == want


def test_dscnn_bn_momentum_has_pytorch_semantics() -> None:
    """running = 0.01 * old + 0.99 * batch (docs/benchmarks.md §3.4 quirk), checked on the first BN."""
    torch.manual_seed(0)
    m = DSCNN().train()
    feats: list[torch.Tensor] = []
    m.inputlayer.register_forward_hook(lambda _m, _i, o: feats.append(o.detach()))
    m(torch.randn(8, 1, 49, 10))
    batch_mean = feats[0].mean(dim=(0, 2, 3))
    torch.testing.assert_close(m.bn.running_mean, 0.99 * batch_mean)


# ---------------------------------------------------------------- ResNet-18 (§4.3)

def test_resnet18_totals_names_shapes(resnet18: ResNet18) -> None:
    m = resnet18
    assert count_params(m) == 11_271_432
    assert count_weights(m) == 11_261_632
    keys = set(m.state_dict())
    for k in ("conv1.weight", "bn1.weight", "fc.weight", "fc.bias"):
        assert k in keys, k
    for s in range(1, 5):
        for b in (0, 1):
            for part in ("conv1.weight", "bn1.weight", "conv2.weight", "bn2.running_var"):
                assert f"backbone.bb_{s}_{b}.{part}" in keys
    for s in (2, 3, 4):
        assert f"backbone.bb_{s}_0.downsample.weight" in keys and f"backbone.bb_{s}_0.bn_ds.weight" in keys
        assert f"backbone.bb_{s}_1.downsample.weight" not in keys
    assert "backbone.bb_1_0.downsample.weight" not in keys
    assert not any(k.endswith("bias") for k in keys if "conv" in k or "downsample" in k)
    assert isinstance(m.backbone.avg_pool, nn.AdaptiveAvgPool2d)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1)
    assert not any(isinstance(x, nn.MaxPool2d) for x in m.modules())
    m.eval()
    with torch.no_grad():
        assert m(torch.rand(2, 3, 64, 64)).shape == (2, 200)


def test_resnet18_macs_per_stage(resnet18: ResNet18) -> None:
    got = _per_layer_macs(resnet18, (3, 64, 64))
    assert sum(got.values()) == 2_221_772_800
    assert count_macs(resnet18, (3, 64, 64)) == 2_221_772_800

    def stage(prefix: str) -> int:
        return sum(v for k, v in got.items() if k.startswith(prefix))

    assert got["conv1"] == 7_077_888 and got["fc"] == 102_400
    assert stage("backbone.bb_1_") == 603_979_776
    for s in (2, 3, 4):
        assert stage(f"backbone.bb_{s}_") == 536_870_912
    assert got["backbone.bb_2_0.downsample"] == 8_388_608
    prefixes = ("conv1", "backbone.bb_1_", "backbone.bb_2_", "backbone.bb_3_", "backbone.bb_4_", "fc")
    assert [_weights_under(resnet18, p) for p in prefixes] == [1_728, 147_456, 524_288, 2_097_152, 8_388_608,
                                                                102_400]


def test_resnet18_init(resnet18: ResNet18) -> None:
    w = resnet18.backbone.bb_4_1.conv2.weight  # fan_out = 512 * 9
    assert w.std().item() == pytest.approx(math.sqrt(2 / (512 * 9)), rel=0.01)
    w = resnet18.backbone.bb_2_0.downsample.weight  # fan_out = 128
    assert w.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.03)
    assert resnet18.fc.weight.abs().max().item() <= 1 / math.sqrt(512)  # PyTorch default Linear init
    assert torch.equal(resnet18.bn1.weight, torch.ones(64))


# ---------------------------------------------------------------- counting

def test_count_macs_hand_cases() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)  # 4*9 weights per 5x5 map: 9 * 100 = 900
            self.gc = nn.Conv2d(4, 6, 1, groups=2)  # 2 inputs per output: 2 * 150 = 300
            self.bn = nn.BatchNorm2d(6)
            self.fc = nn.Linear(150, 3)  # 450
            self.fc.weight.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(torch.flatten(self.bn(self.gc(self.dw(x))), 1))

    m = Tiny()
    assert count_macs(m, (4, 5, 5)) == 900 + 300 + 450
    assert count_weights(m) == 36 + 12 + 450
    # trainable only: dw 36+4, gc 12+6, bn 12, fc bias 3 (frozen fc weight excluded)
    assert count_params(m) == 40 + 18 + 12 + 3
    seq = nn.Linear(8, 5)  # a Linear over a length-7 sequence: 7 * 8 * 5
    assert count_macs(seq, (7, 8)) == 280


# ---------------------------------------------------------------- fx graphs

@pytest.mark.parametrize(("cls", "n_adds"), [(ResNet8, 3), (DSCNN, 0), (ResNet18, 8)])
def test_fx_trace_has_simple_patterns(cls: type[nn.Module], n_adds: int, resnet18: ResNet18) -> None:
    torch.manual_seed(0)
    model = resnet18 if cls is ResNet18 else cls()
    model.eval()
    gm = fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    funcs = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert funcs.count(operator.add) == n_adds
    assert funcs.count(torch.flatten) == 1
    assert set(funcs) <= {operator.add, torch.flatten}
    assert not [n for n in gm.graph.nodes if n.op == "call_method"]
    n_bn = 0
    for node in gm.graph.nodes:
        if node.op != "call_module":
            continue
        mod = modules[node.target]
        if isinstance(mod, nn.ReLU):
            assert not mod.inplace
        if isinstance(mod, nn.BatchNorm2d):
            n_bn += 1
            (src,) = node.args
            assert src.op == "call_module" and isinstance(modules[src.target], nn.Conv2d), node.target
            assert len(src.users) == 1, f"{src.target} feeds more than its BN"
    assert n_bn == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    x = torch.rand(3, *INPUT_SHAPES[cls])
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))
