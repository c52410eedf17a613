"""Sharing groups of the paper's seeds, exactly as docs/method.md §1.4 lists them."""

from __future__ import annotations

import torch

from jpq.cost import evaluate_all
from jpq.data import INPUT_QUANT
from jpq.models import DSCNN, ResNet8, ResNet18
from jpq.search import convert


def _groups(net) -> set[tuple[str, ...]]:
    return {tuple(sorted(g.members)) for g in net.groups}


def test_resnet8_groups() -> None:
    net = convert(ResNet8(), torch.rand(2, 3, 32, 32))
    assert _groups(net) == {
        ("conv1", "inputblock.conv1"),
        ("convblock1.conv1",),
        ("convblock2.conv1",),
        ("convblock3.conv1",),
        ("conv2x", "conv2y"),
        ("conv3x", "conv3y"),
        ("out",),
    }
    out = [g for g in net.groups if g.is_output]
    assert [g.members for g in out] == [("out",)] and out[0].w_bits == (2, 4, 8)
    # at 8 bits everywhere the specs reproduce the §5.6 reference values
    specs = net.layer_specs(fresh=True)
    m = evaluate_all(specs)
    assert m["size_bits"] == 618_880 and round(m["mpic_cycles"]) == 5_953_158 and m["ne16_cycles"] == 155_241


def test_dscnn_groups() -> None:
    net = convert(DSCNN(), torch.rand(2, 1, 49, 10), input_quant=INPUT_QUANT["gsc"])
    assert _groups(net) == {
        ("depthwise1", "inputlayer"),
        ("depthwise2", "pointwise1"),
        ("depthwise3", "pointwise2"),
        ("depthwise4", "pointwise3"),
        ("pointwise4",),
        ("out",),
    }
    specs = {s.name: s for s in net.layer_specs(fresh=True)}
    assert specs["depthwise2"].op == "dw" and float(specs["depthwise2"].cin_eff) == 64.0
    m = evaluate_all(list(specs.values()))
    assert m["size_bits"] == 22_016 * 8
    assert round(m["mpic_cycles"]) == 1_265_128 and m["ne16_cycles"] == 204_838


def test_resnet18_groups() -> None:
    net = convert(ResNet18(), torch.rand(1, 3, 64, 64))
    groups = _groups(net)
    assert ("backbone.bb_1_0.conv2", "backbone.bb_1_1.conv2", "conv1") in groups
    for s in (2, 3, 4):
        stage = (f"backbone.bb_{s}_0.conv2", f"backbone.bb_{s}_0.downsample", f"backbone.bb_{s}_1.conv2")
        assert stage in groups
    for s in (1, 2, 3, 4):
        for b in (0, 1):
            assert (f"backbone.bb_{s}_{b}.conv1",) in groups
    assert ("fc",) in groups and len(groups) == 1 + 3 + 8 + 1
    assert evaluate_all(net.layer_specs(fresh=True))["size_bits"] == 11_261_632 * 8
