"""The CPU kernels of the fused search step (jpq.quant.native): the weight side of a layer against the
eager one-node function, and how the kernels are built (docs/architecture.md, "Fused search step")."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from jpq.errors import ConfigError
from jpq.quant import native
from jpq.quant.activations import fixed_pact
from jpq.quant.params import mixed_layer_params
from jpq.quant.weights import weight_grid
from tests.quant.test_layer_params import _case


@pytest.mark.parametrize("bits", [(0, 2, 4, 8), (2, 4, 8), (0, 8), (8,)])
@pytest.mark.parametrize("shape", [(16, 3, 3, 3), (10, 64), (8, 1, 5), (64, 64, 3, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layer_params_equal_eager(bits, shape, dtype) -> None:
    """W_eff, b_eff and the weight and bias gradients are the eager ones bit for bit; the theta and scale
    gradients (sums over the channel) are close. (64, 64, 3, 3) x 3 precisions runs on several threads."""
    results = []
    grid = weight_grid(torch.tensor(bits), dtype)
    for kernel in (None, native.NativeLayerParams):
        w, b, alpha, clip = (t.to(dtype).clone().requires_grad_(True) for t in _case(bits, shape, 0))
        theta = torch.softmax(alpha, 0)
        s_a = clip / 255.0
        if kernel is None:
            wq, bq = mixed_layer_params(w, b, theta, s_a, grid, bits[0] == 0)
        else:
            wq, bq = kernel.apply(w, b, theta, s_a, grid.levels, grid.upper, grid.nonzero, int(bits[0] == 0))
        gen = torch.Generator().manual_seed(7)
        gw = torch.randn(wq.shape, generator=gen, dtype=dtype)
        gb = torch.randn(bq.shape, generator=gen, dtype=dtype)
        ((wq * gw).sum() + (bq * gb).sum()).backward()
        results.append((wq.detach(), bq.detach(), w.grad, b.grad, alpha.grad, clip.grad))
    eager, fused = results
    for i in range(4):
        assert torch.equal(eager[i], fused[i]), i
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for i in (4, 5):
        torch.testing.assert_close(eager[i], fused[i], rtol=tol, atol=tol)


def test_layer_params_without_theta_gradient() -> None:
    """A one-hot assignment (fine-tune): no theta gradient is asked for, the weight gets the identity STE."""
    w = torch.randn(4, 6, requires_grad=True)
    grid = weight_grid(torch.tensor([0, 2, 4, 8]))
    wq, _ = native.NativeLayerParams.apply(w, torch.zeros(4), torch.eye(4), torch.tensor(0.01), grid.levels,
                                           grid.upper, grid.nonzero, 1)
    wq.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    assert torch.equal(wq[0], torch.zeros(6))  # channel 0 is pruned


@pytest.fixture
def fresh_build(monkeypatch: pytest.MonkeyPatch):
    """Build the kernels anew in this test (and again, normally, for the tests after it)."""
    native.join()
    native._LIBS.clear()
    native._kernels.cache_clear()
    yield monkeypatch
    native._pending.clear()
    native._failed.clear()
    native._LIBS.clear()
    native._kernels.cache_clear()


def test_missing_compiler_is_one_line(fresh_build: pytest.MonkeyPatch) -> None:
    fresh_build.setenv("CC", "no-such-cc")
    with pytest.raises(ConfigError, match=r"^search_step=fused builds its CPU kernels with a C compiler and "
                       r"none is on PATH \(install gcc, set CC, or use trainer.search_step=eager\)$"):
        native.build()


def test_background_build_reports_its_error_when_joined(fresh_build: pytest.MonkeyPatch) -> None:
    """The sweep pre-check starts the build and composes its jobs meanwhile: the error comes at join()."""
    fresh_build.setenv("CC", "no-such-cc")
    native.build(wait=False)
    with pytest.raises(ConfigError, match="none is on PATH"):
        native.join()
    native.join()  # reported once


def test_each_precision_is_built_at_its_first_use(fresh_build: pytest.MonkeyPatch) -> None:
    """build() compiles the float32 kernels, what a search step runs; float64 ones come when first used."""
    native.build(wait=False)
    native.build()
    assert list(native._LIBS) == ["f32"]
    x = torch.tensor([-1.0, 0.5, 7.0], dtype=torch.float64)
    hi, level = torch.tensor([6.0]), torch.tensor(255.0)  # float32 clips: converted for the kernel
    expected = fixed_pact(x, hi.double(), level.double())
    assert torch.equal(native.NativePact.apply(x, None, hi, level), expected)
    assert sorted(native._LIBS) == ["f32", "f64"]


def test_failing_compiler_is_one_line(fresh_build: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cc = tmp_path / "cc"
    cc.write_text("#!/bin/sh\necho 'native.c:1:1: error: no space left' >&2\nexit 1\n")
    cc.chmod(0o755)
    fresh_build.setenv("CC", str(cc))
    with pytest.raises(ConfigError) as e:
        native.build()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"search_step=fused: compiling the CPU kernels with {cc} failed: native.c:1:1: e")


def test_unloadable_library_is_one_line(fresh_build: pytest.MonkeyPatch) -> None:
    """A temporary folder mounted noexec lets the compiler write the library but not load it."""
    import ctypes

    def refuse(path: str, *args, **kwargs):
        raise OSError(f"{path}: failed to map segment from shared object")

    fresh_build.setattr(ctypes, "CDLL", refuse)
    with pytest.raises(ConfigError, match=r"^search_step=fused: cannot load the CPU kernels compiled in .*"
                       r"failed to map segment.*set TMPDIR to a folder that allows programs, or use "
                       r"trainer.search_step=eager$"):
        native.build()


def test_build_leaves_no_file_and_shares_the_openmp_runtime(fresh_build: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    """The library is compiled into a private folder that is gone once it is loaded (no compiled file is
    ever read back), and it uses the OpenMP runtime PyTorch already loaded, not a second one."""
    fresh_build.setenv("TMPDIR", str(tmp_path))
    import tempfile

    fresh_build.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    native.build()
    assert list(tmp_path.iterdir()) == []
    x, hi, level = torch.tensor([-1.0, 0.5, 7.0]), torch.tensor([6.0]), torch.tensor(255.0)
    assert torch.equal(native.NativePact.apply(x, None, hi, level), fixed_pact(x, hi, level))
    if sys.platform.startswith("linux"):  # one runtime named libgomp.so.1: PyTorch's (other wheels
        maps = Path("/proc/self/maps").read_text()  # may bring privately named copies of their own)
        assert len(set(re.findall(r"\S*/libgomp\.so\.1\b", maps))) == 1
