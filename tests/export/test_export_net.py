"""Export of searched networks (docs/method.md §8): pruned, precision-sorted model, ONNX, packed weights.

Random discrete assignments (0 bits included, >= 1 channel kept, a group pruned to one channel, a group
whose kept channels share one precision, random PACT clips) on the digits CNN, ResNet-8 (residual groups)
and DS-CNN (depthwise, signed input); a hand-computed permutation case; a ResNet-18 smoke export.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from export_assign import choose
from rich.console import Console
from torch import Tensor, nn

from jpq.cost import evaluate_all
from jpq.data.base import InputQuant
from jpq.errors import UnsupportedModelError
from jpq.export import OutputOrder, Pact, export_net, precision_order, read_weights
from jpq.export.export import MODEL_FORMAT
from jpq.export.surgery import exported_model
from jpq.models.digits import DigitsCNN
from jpq.models.dscnn import DSCNN
from jpq.models.resnet8 import ResNet8
from jpq.models.resnet18 import ResNet18
from jpq.search import SearchableNet, convert

SIGNED_INPUT = InputQuant(signed=True, lo=-6.0, hi=6.0, bits=(8,))  # the GSC/DS-CNN input (§1.5)


def _case(name: str) -> tuple[nn.Module, Tensor, InputQuant | None]:
    g = torch.Generator().manual_seed(7)
    if name == "digits":
        return DigitsCNN(), torch.rand(16, 1, 8, 8, generator=g), None
    if name == "resnet8":
        return ResNet8(num_classes=10, in_channels=3), torch.rand(16, 3, 32, 32, generator=g), None
    if name == "dscnn":
        return (
            DSCNN(num_classes=12, in_channels=1),
            3.0 * torch.randn(16, 1, 49, 10, generator=g),
            SIGNED_INPUT,
        )
    raise ValueError(name)


def _randomize_bn(m: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1 + 0.05)
    return m.eval()


def randomize(net: SearchableNet, seed: int) -> None:
    """A random discrete assignment: every group draws its channel precisions (0 included, >= 1 kept);
    the first prunable group keeps a single channel, the second keeps only 4-bit channels; activation
    precisions and PACT clips are drawn too. Then ``discretize()``."""
    g = torch.Generator().manual_seed(seed)
    prunable = 0
    for grp in net.groups:
        p, c = grp.alpha.shape
        idx = torch.randint(0, p, (c,), generator=g)
        if grp.can_prune:
            if prunable == 0:
                idx = torch.zeros(c, dtype=torch.long)
                idx[int(torch.randint(0, c, (1,), generator=g))] = int(torch.randint(1, p, (1,), generator=g))
            elif prunable == 1:
                idx = torch.where(torch.rand(c, generator=g) < 0.3, 0, grp.w_bits.index(4))
            if bool((idx == 0).all()):  # keep >= 1 channel
                idx[int(torch.randint(0, c, (1,), generator=g))] = grp.w_bits.index(4)
            prunable += 1
        choose(grp, idx, g)
    iq = net.input_quant
    iq.clip_val.data.mul_(0.8 + 0.4 * torch.rand(iq.clip_val.shape, generator=g))
    if iq.clip_lo is not None:
        iq.clip_lo.data.mul_(0.8 + 0.4 * torch.rand(iq.clip_lo.shape, generator=g))
    net.discretize().eval()


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _kept(net: SearchableNet, group: int) -> int:
    return sum(b != 0 for b in net.groups[group].channel_bits())


def _expected_weight_bits(net: SearchableNet) -> int:
    """Hand count of the deployed weight bits: kept rows x kept inputs x kernel x their precision."""
    total = 0
    for li in net.layers:
        bits = net.groups[li.group].channel_bits()
        k = li.kernel[0] * li.kernel[1]
        if li.op == "dw":
            per_row = k
        elif li.in_group is None:
            per_row = li.in_const * k
        else:
            per_row = _kept(net, li.in_group) * li.in_mult * k
        total += sum(b * per_row for b in bits)
    return total


# -- tests ------------------------------------------------------------------------------------------------
def test_precision_order_is_stable_and_drops_pruned() -> None:
    assert precision_order([2, 8, 0, 4, 8, 2, 0]) == [1, 4, 3, 0, 5]
    assert precision_order([4, 4, 4]) == [0, 1, 2]
    assert precision_order([0, 0, 2]) == [2]


def _saved_model(net: SearchableNet, export_dir: Path) -> torch.nn.Module:
    """The exported module rebuilt from ``net`` with ``model.pt``'s tensors (a state_dict, no pickle)."""
    payload = torch.load(export_dir / "model.pt", weights_only=True)
    assert payload["format"] == MODEL_FORMAT
    model = exported_model(net)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


@pytest.mark.parametrize(
    ("name", "a_bits", "seed"),
    [("digits", (8,), 0), ("resnet8", (8,), 1), ("resnet8", (2, 4, 8), 2), ("dscnn", (8,), 3)],
)
def test_export_random_assignment(name: str, a_bits: tuple[int, ...], seed: int, tmp_path: Path) -> None:
    model, x, iq = _case(name)
    net = convert(_randomize_bn(model, seed), x[:2], a_bits=a_bits, input_quant=iq)
    randomize(net, seed)
    groups = [g.channel_bits() for g in net.groups]
    assert any(sum(b != 0 for b in bits) == 1 for bits in groups[:-1])  # a group pruned to one channel
    assert any(0 in bits for bits in groups)

    rec = export_net(net, tmp_path, example_inputs=x, console=_quiet())
    assert rec["ok"], rec["checks"]
    assert {p.name for p in tmp_path.iterdir()} >= {
        "model.pt",
        "model.onnx",
        "weights.bin",
        "manifest.json",
        "verify.json",
    }
    p = rec["predictions"]
    assert p["torch_f64"]["max_abs_dlogit"] < 1e-9  # the same function (float64, §8)
    assert p["torch_f32"]["agreement"] == 1.0 and p["onnx_f32"]["agreement"] == 1.0

    # the saved plain model: no search machinery, same outputs as the fake-quant network
    exported = _saved_model(net, tmp_path)
    kinds = {type(m).__name__ for m in exported.modules()}
    assert not kinds & {"SearchConv", "SearchLinear", "ActQuantizer", "GroupQuantizer", "GroupAct"}
    with torch.no_grad():
        ref, out = net(x), exported(x)
    # float32: PACT floor flips at quantization boundaries give rare ~1e-4 steps (export.py docstring)
    assert float((ref - out).abs().max()) <= 1e-3
    assert torch.equal(ref.argmax(1), out.argmax(1))
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = torch.from_numpy(sess.run(None, {"input": x.numpy()})[0])
    assert float((ref - onnx_out).abs().max()) <= 1e-3

    # exactly the kept channel counts, consumers included
    mods = dict(exported.named_modules())
    for li in net.layers:
        m = mods[li.name]
        kept = _kept(net, li.group)
        kept_in = li.in_const if li.in_group is None else _kept(net, li.in_group) * li.in_mult
        if isinstance(m, nn.Linear):
            assert (m.out_features, m.in_features) == (kept, kept_in), li.name
        else:
            assert (m.out_channels, m.in_channels) == (kept, kept_in), li.name
            assert m.groups == (kept if li.op == "dw" else 1)

    # packed weight bits = hand count = the eval-mode size cost (§5.2)
    size_bits = evaluate_all(net.layer_specs(fresh=True))["size_bits"]
    assert rec["packed_weight_bits"] == _expected_weight_bits(net) == round(size_bits)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["totals"]["weight_bits"] == rec["packed_weight_bits"]
    assert manifest["totals"]["file_bytes"] == (tmp_path / "weights.bin").stat().st_size
    assert manifest["input_act"]["signed"] == (name == "dscnn")
    assert sum(lay["padding_bits"] for lay in manifest["layers"]) == rec["padding_bits"]
    by_group: dict[int, list[list[int]]] = {}
    for lay in manifest["layers"]:
        by_group.setdefault(lay["group"], []).append(lay["channel_index"])
    for idx in by_group.values():  # residual-add inputs and depthwise members share one permutation
        assert all(i == idx[0] for i in idx)
    if name in ("resnet8", "dscnn"):  # e.g. {conv2y, conv2x} meet at an add; {pointwise1, depthwise2}
        assert sum(len(v) == 2 for v in by_group.values()) >= 3
    for lay in manifest["layers"]:
        subs = lay["sub_blocks"]
        assert [s["w_bits"] for s in subs] == sorted({s["w_bits"] for s in subs}, reverse=True)
        assert lay["padding_bits"] == sum(8 * s["weights"]["nbytes"] - s["weights"]["nbits"] for s in subs)

    # unpack round trip: the integers times the scales are the exported weights, bit for bit
    back = read_weights(tmp_path)
    for li in net.layers:
        b, w = back[li.name], mods[li.name].weight.detach()
        bits = np.asarray(sorted((v for v in net.groups[li.group].channel_bits() if v), reverse=True))
        np.testing.assert_array_equal(b["w_bits"], bits)
        shape = (-1,) + (1,) * (w.dim() - 1)
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        flat = b["w_int"].reshape(len(bits), -1)
        assert (flat >= lo[:, None]).all() and (flat <= hi[:, None]).all()
        deq = torch.from_numpy(b["w_int"]).float() * torch.from_numpy(b["w_scale"]).view(shape)
        assert torch.equal(deq, w), li.name
        bias = torch.from_numpy(b["bias_int32"]).double() * torch.from_numpy(b["bias_scale"]).double()
        torch.testing.assert_close(bias.float(), mods[li.name].bias.detach(), rtol=1e-5, atol=1e-6)


class _Tiny(nn.Module):
    """conv 1x1 (1 -> 4) on a 2x2 input, flatten (feature = c*4 + s), linear 16 -> 3."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)
        self.fc = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def test_permutation_hand_computed(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = convert(_Tiny(), torch.rand(2, 1, 2, 2))
    conv_g, fc_g = net.groups
    # conv channels [2, 0, 8, 4] bits -> order [2, 3, 0]; fc rows [4, 8, 2] -> order [1, 0, 2]
    for grp, choice in ((conv_g, [1, 0, 3, 2]), (fc_g, [1, 2, 0])):
        a = torch.zeros_like(grp.alpha)
        a[torch.tensor(choice), torch.arange(len(choice))] = 1.0
        grp.alpha.data.copy_(a)
    net.discretize().eval()
    assert conv_g.channel_bits() == [2, 0, 8, 4] and fc_g.channel_bits() == [4, 8, 2]
    with torch.no_grad():
        w_conv, b_conv = net.net.conv.quantized_params()
        w_fc, b_fc = net.net.fc.quantized_params()
    rec = export_net(net, tmp_path, console=_quiet())
    assert rec["ok"], rec["checks"]
    m = _saved_model(net, tmp_path)
    assert torch.equal(m.conv.weight, w_conv[[2, 3, 0]]) and torch.equal(m.conv.bias, b_conv[[2, 3, 0]])
    cols = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3]  # channel 2, then 3, then 0, H*W = 4 each
    assert torch.equal(m.fc.weight, w_fc[[1, 0, 2]][:, cols]) and torch.equal(m.fc.bias, b_fc[[1, 0, 2]])
    assert isinstance(m.output_order, OutputOrder) and m.output_order.index.tolist() == [1, 0, 2]
    assert isinstance(m.conv_act, Pact) and m.conv_act.a_bits == 8
    man = json.loads((tmp_path / "manifest.json").read_text())
    conv, fc = man["layers"]
    assert conv["channel_index"] == [2, 3, 0] and conv["input_index"] is None
    assert fc["channel_index"] == [1, 0, 2] and fc["input_index"] == cols and man["output_order"] == [1, 0, 2]
    # activations: input PACT clip 1, conv output PACT clip 6 (8 bits), float logits (§1.4, §2.2)
    assert conv["input_act"]["pact_scale"] == pytest.approx(255 / 1.001, rel=1e-7)
    assert conv["output_act"]["clip"] == 6.0 and conv["output_act"]["scale_bias"] == pytest.approx(6 / 255)
    assert fc["input_act"] == conv["output_act"] and fc["output_act"] is None
    # conv: one 1x1x1 filter per row at 8, 4, 2 bits -> 14 bits in 3 bytes (0 + 4 + 6 padding bits)
    assert [(s["w_bits"], s["rows"], s["shape"]) for s in conv["sub_blocks"]] == [
        (8, [0, 1], [1, 1, 1, 1]),
        (4, [1, 2], [1, 1, 1, 1]),
        (2, [2, 3], [1, 1, 1, 1]),
    ]
    assert (conv["weight_bits"], conv["weight_bytes"], conv["padding_bits"]) == (14, 3, 10)
    # fc: 12 inputs per row at 8 + 4 + 2 bits = 168 bits, 21 bytes, no padding
    assert (fc["weight_bits"], fc["weight_bytes"], fc["padding_bits"]) == (168, 21, 0)
    assert rec["packed_weight_bits"] == 182 and rec["padding_bits"] == 10
    assert rec["size_bits"] == pytest.approx(182)
    assert man["totals"]["weight_region_bytes"] == 24 and conv["sub_blocks"][0]["weights"]["offset"] == 0
    # float32 arrays start 4-byte aligned after the weight region
    assert conv["sub_blocks"][0]["w_scale"]["offset"] == 24


def test_export_rejects_bad_networks(tmp_path: Path) -> None:
    net = convert(_Tiny(), torch.rand(2, 1, 2, 2), keep_alive=False)
    with pytest.raises(ValueError, match="discretize"):
        export_net(net, tmp_path, console=_quiet())
    conv_g = net.groups[0]
    conv_g.alpha.data.copy_(torch.tensor([[1.0] * 4, [0.0] * 4, [0.0] * 4, [0.0] * 4]))
    with pytest.warns(UserWarning, match="fully pruned"):
        net.discretize()
        assert conv_g.channel_bits() == [0, 0, 0, 0]
    with pytest.raises(UnsupportedModelError, match="every channel pruned"):
        export_net(net, tmp_path, console=_quiet())


def test_export_resnet18_smoke(tmp_path: Path) -> None:
    model = ResNet18(num_classes=200, in_channels=3)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    net = convert(_randomize_bn(model, 5), x)
    randomize(net, 5)
    rec = export_net(net, tmp_path, example_inputs=x, console=_quiet(), f64_samples=2)
    assert rec["ok"], rec["checks"]
    # float64 is the correctness check; in float32 a PACT floor flip moves a logit by a whole step
    # (~1e-2 here) depending on the summation order of the machine's kernels, so only predictions count
    assert rec["predictions"]["torch_f64"]["max_abs_dlogit"] < 1e-9
    assert rec["predictions"]["torch_f32"]["agreement"] == 1.0
    assert rec["predictions"]["onnx_f32"]["agreement"] == 1.0
    assert rec["packed_weight_bits"] == _expected_weight_bits(net)
    assert rec["kept_ok"] and len(rec["layers"]) == 21  # 17 convs + 3 downsample + fc


@pytest.mark.parametrize(("w_bits", "per_layer"), [((2, 4, 8), False), ((4,), False), ((0, 2, 4, 8), True)])
def test_export_other_search_spaces(w_bits: tuple[int, ...], per_layer: bool, tmp_path: Path) -> None:
    """MixPrec (no 0 bits), fixed-precision QAT and the per-layer (EdMIPS-like) search export too."""
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    net = convert(_randomize_bn(DigitsCNN(), 4), x[:2], w_bits=w_bits, per_layer=per_layer)
    randomize(net, 4)
    rec = export_net(net, tmp_path, example_inputs=x, console=_quiet())
    assert rec["ok"], rec["checks"]
    assert rec["packed_weight_bits"] == _expected_weight_bits(net)
    if w_bits == (4,):
        assert rec["packed_weight_bits"] == 15248 * 4  # every DigitsCNN weight at 4 bits
    if per_layer:
        for grp in net.groups:  # one precision per layer: a single sub-block each
            assert len(set(grp.channel_bits()) - {0}) == 1
        assert all(len(lay["rows_per_bits"]) == 1 for lay in rec["layers"])
