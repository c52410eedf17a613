"""Seed networks against the exact counts of benchmarks.md §2.4, §3.4, §4.3."""

from __future__ import annotations

import pytest
import torch
from torch import fx, nn

from jpq.models import DSCNN, DigitsCNN, ResNet8, ResNet18, count_macs, count_params, count_weights


def test_resnet8_counts_and_names() -> None:
    m = ResNet8()
    assert count_params(m) == 78_058
    assert count_weights(m) == 77_360
    assert count_macs(m, (3, 32, 32)) == 12_501_632
    keys = set(m.state_dict())
    for k in ("inputblock.conv1.weight", "inputblock.bn.running_var", "convblock1.conv1.weight", "conv1.bias",
              "bn1.weight", "convblock2.conv1.weight", "conv2y.weight", "bn2.bias", "conv2x.bias",
              "convblock3.bn.weight", "conv3y.bias", "bn3.weight", "conv3x.weight", "out.weight", "out.bias"):
        assert k in keys, k
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_resnet8_per_layer_macs() -> None:
    m = ResNet8()
    got = {}
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            mod.register_forward_hook(lambda mm, i, o, name=name: got.__setitem__(
                name, mm.weight[0].numel() * o[0].numel() if isinstance(mm, nn.Conv2d) else mm.weight.numel()))
    m.eval()(torch.zeros(1, 3, 32, 32))
    assert got == {
        "inputblock.conv1": 442_368, "convblock1.conv1": 2_359_296, "conv1": 2_359_296,
        "convblock2.conv1": 1_179_648, "conv2y": 2_359_296, "conv2x": 131_072,
        "convblock3.conv1": 1_179_648, "conv3y": 2_359_296, "conv3x": 131_072, "out": 640,
    }


def test_dscnn_counts_and_names() -> None:
    m = DSCNN()
    assert count_params(m) == 23_756
    assert count_weights(m) == 22_016
    assert count_macs(m, (1, 49, 10)) == 2_656_768
    keys = set(m.state_dict())
    for k in ("inputlayer.weight", "bn.running_mean", "depthwise1.weight", "bn11.weight", "pointwise4.bias",
              "bn42.weight", "out.weight"):
        assert k in keys, k
    assert m.bn11.momentum == 0.99 and m.depthwise2.groups == 64
    assert m.eval()(torch.zeros(2, 1, 49, 10)).shape == (2, 12)


def test_resnet18_counts_and_names() -> None:
    m = ResNet18()
    assert count_params(m) == 11_271_432
    assert count_weights(m) == 11_261_632
    assert count_macs(m, (3, 64, 64)) == 2_221_772_800
    keys = set(m.state_dict())
    for k in ("conv1.weight", "bn1.weight", "backbone.bb_1_0.conv1.weight", "backbone.bb_2_0.downsample.weight",
              "backbone.bb_4_1.bn2.bias", "backbone.bb_3_0.bn_ds.running_var", "fc.weight", "fc.bias"):
        assert k in keys, k
    assert "backbone.bb_1_0.downsample.weight" not in keys


def test_digits_cnn_size() -> None:
    assert count_weights(DigitsCNN()) == 15_248


@pytest.mark.parametrize("cls", [ResNet8, DSCNN, ResNet18, DigitsCNN])
def test_fx_traceable(cls: type[nn.Module]) -> None:
    fx.symbolic_trace(cls())
