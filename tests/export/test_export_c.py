"""Integer-only C export (docs/method.md §8, deployment): the integer PyTorch reference against the compiled
C (bit-exact), against the fake-quant network (prediction agreement), and the packed weight bytes.

Random discrete assignments from ``test_export_net`` (a group pruned to one channel, a group whose kept
channels share one precision, random PACT clips) on the digits CNN, ResNet-8 (residual adds, mixed
activation precisions) and DS-CNN (depthwise, signed input with a zero point); ResNet-18 (max pool,
global average pool) on a small input.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from export_assign import choose
from rich.console import Console
from test_export_net import _case, _expected_weight_bits, _randomize_bn, randomize
from torch import Tensor, nn

from jpq.cost import evaluate_all
from jpq.errors import UnsupportedModelError
from jpq.export.deploy import ToolchainError, export_c
from jpq.export.integer import AddOp, ConvOp, int32_bias, integerize
from jpq.export.intref import add_codes, compare_fake_quant, reference_logits
from jpq.models.resnet18 import ResNet18
from jpq.search import SearchableNet, convert

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _random_inputs(name: str, n: int, seed: int) -> Tensor:
    model, x, iq = _case(name)
    g = torch.Generator().manual_seed(seed)
    shape = (n, *x.shape[1:])
    return torch.rand(shape, generator=g) if iq is None else 3.0 * torch.randn(shape, generator=g)


def _net(name: str, a_bits: tuple[int, ...], seed: int) -> SearchableNet:
    torch.manual_seed(seed)  # the seed networks' weight init uses the global generator
    model, x, iq = _case(name)
    net = convert(_randomize_bn(model, seed), x[:2], a_bits=a_bits, input_quant=iq)
    randomize(net, seed)
    return net


@pytest.mark.parametrize(("name", "a_bits", "seed"), [("digits", (8,), 0), ("resnet8", (2, 4, 8), 0),
                                                      ("dscnn", (2, 4, 8), 0)])
def test_c_export_random_assignment(name: str, a_bits: tuple[int, ...], seed: int, tmp_path: Path) -> None:
    net = _net(name, a_bits, seed)
    x = _random_inputs(name, 6, seed)
    rec = export_c(net, tmp_path, x, console=_quiet())
    assert rec["ok"], rec["checks"]
    assert rec["c_bit_exact"] and rec["c_mismatches"] == 0 and rec["samples"] == 6
    # the C logits file is the reference's, value for value
    prog = integerize(net)
    _, ref = reference_logits(prog, x)
    assert np.array_equal(np.fromfile(tmp_path / "test_logits.bin", dtype="<i4").reshape(ref.shape), ref)
    # weight bytes = size_bits / 8 + the reported per-block padding; size_bits = the hand count
    size_bits = evaluate_all(net.layer_specs(fresh=True))["size_bits"]
    assert size_bits == _expected_weight_bits(net) == rec["size_bits"]
    assert 8 * rec["weight_bytes"] == size_bits + rec["padding_bits"]
    blocks = [b for op in prog.ops if isinstance(op, ConvOp) for b in op.blocks]
    assert rec["padding_bits"] == sum(b.padding_bits for b in blocks)
    assert all(0 <= b.padding_bits < 8 for b in blocks)
    assert rec["weight_bytes"] == sum(len(b.data) for b in blocks)
    assert rec["scratch_bytes"] > 0 and rec["static_ram_bytes"] == 0 and rec["flash_code_bytes"] > 0
    assert rec["flash_const_bytes"] >= rec["weight_bytes"] + rec["param_bytes"]


#: seeds of the agreement test: the first few, for every network (none skipped)
AGREEMENT_SEEDS = range(4)


@pytest.mark.parametrize("seed", AGREEMENT_SEEDS)
@pytest.mark.parametrize(("name", "n"), [("digits", 200), ("resnet8", 60), ("dscnn", 60)])
def test_integer_reference_agrees_with_fake_quant(name: str, n: int, seed: int) -> None:
    """Random mixed 2/4/8-bit assignments: >= 99 % of the predictions agree for every seed."""
    net = _net(name, (2, 4, 8), seed)
    prog = integerize(net)
    xs = _random_inputs(name, n, seed + 100)
    _, logits = reference_logits(prog, xs)
    fq = compare_fake_quant(net, logits, xs, prog.logit_scale)
    assert fq["agreement"] >= 0.99, fq
    assert fq["max_abs_dlogit"] < 0.1, fq


def test_c_export_files_and_sizes(tmp_path: Path) -> None:
    net = _net("digits", (8,), 0)
    rec = export_c(net, tmp_path, _random_inputs("digits", 3, 1), console=_quiet())
    for f in ("model.h", "model.c", "weights.c", "weights.h", "jpq_kernels.c", "jpq_kernels.h", "main.c",
              "Makefile", "verify_c.json"):
        assert (tmp_path / f).is_file(), f
    header = (tmp_path / "model.h").read_text()
    assert "void jpq_model_run(const uint8_t *in, int32_t *out, uint8_t *scratch);" in header
    assert f"#define JPQ_SCRATCH_SIZE {rec['scratch_bytes']}" in header
    assert "#define JPQ_INPUT_SIZE 64" in header and "#define JPQ_OUTPUT_SIZE 10" in header
    src = "".join((tmp_path / f).read_text() for f in ("model.c", "weights.c", "jpq_kernels.c"))
    assert "malloc" not in src and "float" not in src and "double" not in src


def _prune_most(net: SearchableNet, seed: int, keep: float) -> None:
    """A random assignment that keeps about ``keep`` of every prunable group's channels (>= 1), at random
    precisions and random activation precisions and clips; then ``discretize()``."""
    g = torch.Generator().manual_seed(seed)
    for grp in net.groups:
        p, c = grp.alpha.shape
        idx = torch.randint(1 if grp.can_prune else 0, p, (c,), generator=g)
        if grp.can_prune:
            idx = torch.where(torch.rand(c, generator=g) < keep, idx, 0)
            idx[int(torch.randint(0, c, (1,), generator=g))] = int(torch.randint(1, p, (1,), generator=g))
        choose(grp, idx, g)
    net.discretize().eval()


def test_c_export_resnet18(tmp_path: Path) -> None:
    """ResNet-18 (residual groups with and without projection, global average pool, 200 classes)
    with mixed 2/4/8-bit activations and most channels pruned (a fast compile): C bit-exact, agreement."""
    torch.manual_seed(5)
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    net = convert(_randomize_bn(ResNet18(num_classes=200, in_channels=3), 5), x[:2], a_bits=(2, 4, 8))
    _prune_most(net, 5, keep=0.1)
    rec = export_c(net, tmp_path, x, console=_quiet())
    assert rec["ok"], rec["checks"]
    assert rec["c_bit_exact"] and rec["samples"] == 4 and rec["fake_quant"]["agreement"] == 1.0
    assert rec["fake_quant"]["max_abs_dlogit"] < 1e-3, rec["fake_quant"]
    assert 8 * rec["weight_bytes"] == _expected_weight_bits(net) + rec["padding_bits"]
    kinds = {op["op"] + ":" + op.get("kind", "") for op in rec["ops"]}
    assert {"pool:sum", "add:", "conv:conv", "conv:linear"} <= kinds


class _Pooled(nn.Module):
    """Max pooling with padding, a dilated conv and a global average pool (2-D), or the same in 1-D."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.c1, self.b1, self.r1 = conv(2, 8, 3, padding=1), bn(8), nn.ReLU()
        self.mp = nn.MaxPool2d(3, 2, padding=1) if dims == 2 else nn.MaxPool1d(3, 2, padding=1)
        self.c2, self.b2, self.r2 = conv(8, 12, 3, padding=2, dilation=2), bn(12), nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(12, 5)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mp(self.r1(self.b1(self.c1(x))))
        return self.fc(torch.flatten(self.gap(self.r2(self.b2(self.c2(x)))), 1))


@pytest.mark.parametrize("dims", [1, 2])
def test_c_export_max_pool_dilation_conv1d(dims: int, tmp_path: Path) -> None:
    torch.manual_seed(dims)
    shape = (2, 9, 9) if dims == 2 else (2, 17)
    model = _Pooled(dims).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.2)
    net = convert(model, torch.rand(2, *shape), a_bits=(4, 8))
    randomize(net, 7)
    x = torch.rand(40, *shape, generator=torch.Generator().manual_seed(2))
    rec = export_c(net, tmp_path, x, console=_quiet())
    assert rec["ok"], rec["checks"]
    assert rec["fake_quant"]["agreement"] >= 0.99
    kinds = {op["op"] + ":" + op.get("kind", "") for op in rec["ops"]}
    assert kinds == {"pool:max", "pool:sum", "conv:conv", "conv:linear"}


def test_c_export_missing_compiler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "no-such-cc")
    with pytest.raises(ToolchainError, match="no C compiler: 'no-such-cc' is not on PATH"):
        export_c(_net("digits", (8,), 0), tmp_path, _random_inputs("digits", 2, 0), console=_quiet())
    assert not any(tmp_path.iterdir())  # checked before anything is written


# -- the command on a finished run --------------------------------------------------------------------------
def test_cli_export_target_c(
    run_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jpq.cli import main

    monkeypatch.chdir(run_dir.parent)  # a relative RUN_DIR, as typed in a shell
    assert main(["export", run_dir.name, "--target", "c", "--max-samples", "50"]) == 0
    err = capsys.readouterr().err
    for text in ("C vs integer reference", "50/50 inputs", "bit-exact", "agreement with fake-quant",
                 "bytes = size_bits/8 + pad", "size_bits vs the run's", "scratch", "µs/input"):
        assert text in err, text
    rec = json.loads((run_dir / "export" / "c" / "verify_c.json").read_text())
    result = json.loads((run_dir / "result.json").read_text())
    assert rec["ok"] and rec["c_bit_exact"] and rec["samples"] == 50
    assert rec["size_bits"] == result["size_bits"] == 8 * rec["weight_bytes"] - rec["padding_bits"]
    assert not (run_dir / "export" / "model.onnx").exists()  # --target c writes export/c/ only


def test_cli_export_target_c_bad_input(run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    from jpq.cli import main

    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir / ".hydra", unfinished / ".hydra")
    assert main(["export", str(unfinished), "--target", "c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no finished fine-tune" in err and "\n" not in err
    assert main(["export", str(run_dir), "--target", "c", "--no-verify"]) == 2
    assert "always compiles and verifies" in capsys.readouterr().err
    monkeypatch.setenv("CC", "no-such-cc")
    assert main(["export", str(run_dir), "--target", "c"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: no C compiler: 'no-such-cc' is not on PATH (install gcc or clang, or set CC)"


@pytest.mark.parametrize("a_bits", [(4,), (8,)])
def test_adds_compute_the_fake_quant_float32_add(a_bits: tuple[int, ...], tmp_path: Path) -> None:
    """Every residual add is the fake-quant float32 add done on bit patterns: over all code pairs it equals
    PACT_out(q_a / S_a + q_b / S_b) evaluated by PyTorch in float32, which is one step below the exact sum
    for some pairs; at 4 bits the integer ResNet-8 then reproduces the fake-quant network (the logits differ
    by their int32 rounding only)."""
    torch.manual_seed(100)
    model, _, _ = _case("resnet8")
    net = convert(_randomize_bn(model, 0), torch.rand(2, 3, 32, 32), a_bits=a_bits)
    randomize(net, 0)
    prog = integerize(net)
    adds = [op for op in prog.ops if isinstance(op, AddOp)]
    assert len(adds) == 3
    for op in adds:
        qa = torch.arange(op.a.vmax + 1).view(-1, 1).expand(-1, op.b.vmax + 1)
        qb = torch.arange(op.b.vmax + 1).view(1, -1).expand(op.a.vmax + 1, -1)
        got = add_codes(op, qa, qb)
        va = qa.float().div_(op.a.scale)
        vb = qb.float().div_(op.b.scale)
        clip = float(torch.tensor(op.clip_bits, dtype=torch.int32).view(torch.float32))
        want = torch.floor(torch.clamp(va + vb, 0.0, clip).mul_(op.y.scale)).to(torch.int64)
        assert torch.equal(got, want)
        exact = torch.minimum(qa + qb, torch.tensor(op.qmax))
        assert bool((want <= exact).all()) and bool((want < exact).any())  # the float32 add loses steps
    if a_bits == (8,):
        return
    xs = _random_inputs("resnet8", 40, 9)
    _, logits = reference_logits(prog, xs)
    fq = compare_fake_quant(net, logits, xs, prog.logit_scale)
    assert fq["agreement"] == 1.0 and fq["max_abs_dlogit"] < 1.0 / prog.logit_scale + 1e-6, fq
    rec = export_c(net, tmp_path, xs[:3], console=_quiet())
    assert rec["ok"] and rec["c_bit_exact"]


def test_bias_is_int32_at_the_finest_resolution_it_holds() -> None:
    lay = SimpleNamespace(name="fc", bias=torch.tensor([1000.0, -0.3, 0.0]))
    bias, t = int32_bias(lay, 1.0, np.array([40, 40, 40]))  # type: ignore[arg-type]
    assert bias.dtype == np.int32 and t.dtype == np.int8
    assert t.tolist() == [20, 31, 40]  # 2^30 / 1000 -> 2^20; 0.3 * 2^31 < 2^30; the shift itself
    assert bias.tolist() == [1000 << 20, round(float(lay.bias[1]) * 2**31), 0]
    assert int32_bias(lay, 1.0, np.array([12, 12, 12]))[1].tolist() == [12, 12, 12]
    big = SimpleNamespace(name="fc", bias=torch.tensor([3e9]))
    msg = r"^layer fc: a bias of 3e\+09 output steps does not fit int32$"
    with pytest.raises(UnsupportedModelError, match=msg):
        int32_bias(big, 1.0, np.array([40]))  # type: ignore[arg-type]


def test_int32_accumulator_overflow_is_refused() -> None:
    """70000 inputs of 255 times weights of 127 can exceed 2^31 - 1: a one-line error, no int64 fallback."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(70_000, 2))
    nn.init.constant_(model[1].weight, 1.0)
    net = convert(model.eval(), torch.rand(2, 70_000))
    net.discretize().eval()
    with pytest.raises(UnsupportedModelError, match=r"^layer .*: the int32 accumulator could overflow$"):
        integerize(net)


def test_zero_weight_channel_exports_its_bias(tmp_path: Path) -> None:
    """A kept channel whose weights are all 0 outputs PACT(bias): legal, bit-exact, and in agreement."""
    torch.manual_seed(3)
    model, x, _ = _case("digits")
    first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    first.weight.data[:3] = 0.0
    net = convert(_randomize_bn(model, 3), x[:2])
    net.discretize().eval()
    prog = integerize(net)
    conv = next(op for op in prog.ops if isinstance(op, ConvOp))
    assert (conv.w_int.reshape(conv.w_int.shape[0], -1) == 0).all(1).sum() >= 3
    xs = _random_inputs("digits", 50, 4)
    rec = export_c(net, tmp_path, xs, console=_quiet())
    assert rec["ok"] and rec["c_bit_exact"] and rec["fake_quant"]["agreement"] == 1.0, rec["checks"]
