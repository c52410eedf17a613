"""The fused search step on the CPU: the one-pass C kernels of ``native.c`` as autograd functions
(docs/architecture.md, "Fused search step").

The eager functions (:mod:`jpq.quant.activations`, :mod:`jpq.quant.params`) make one pass over a tensor per
elementary operation. Here each function is one pass forward and one backward, which keeps nothing but
its input for the backward (the integer levels are recomputed there):

* :class:`NativePact`: PACT at one precision (the fixed-activation case);
* :class:`NativeMixedPact`: the mixture ``sum_j theta_j PACT_j(x)`` with every clip and theta gradient;
* :class:`NativeLayerParams`: a layer's ``(W_eff, b_eff)`` with the weight, bias, theta and scale gradients;
* :class:`NativeNetParams`: the same for every layer of a network, in one call forward and one backward.

The forward values are the eager ones bit for bit (same float operations in the same order); gradient
sums run in float over tiles and in double across them, so they differ from the eager ones by summation
order only. The kernels are compiled once per process with the system C compiler into a private temporary
folder that is removed once the library is loaded: no compiled file is ever read back from disk. Only
float32/float64 CPU tensors run here (:func:`supports`).
"""

from __future__ import annotations

import ctypes
import functools
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from jpq.errors import ConfigError
from jpq.quant.bias import _ATOL

#: compiler flags: no multiply-add contraction (the forward repeats the eager float operations exactly);
#: -fno-trapping-math lets the loops vectorise (nothing here reads floating-point exception flags)
CFLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
          "-shared", "-fPIC")
_SRC = Path(__file__).with_name("native.c")
_TYPES = {
    torch.float32: ("f32", ctypes.c_float),
    torch.float64: ("f64", ctypes.c_double),
}
_P, _I64, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def compiler() -> list[str] | None:
    """The C compiler command the kernels are built with (``$CC``, else gcc or cc on PATH), or None."""
    cmd = shlex.split(os.environ.get("CC", ""))
    if cmd:
        path = shutil.which(cmd[0])
        return None if path is None else [path, *cmd[1:]]
    path = shutil.which("gcc") or shutil.which("cc")
    return None if path is None else [path]


def supports(x: Tensor) -> bool:
    """Whether the kernels take ``x`` (and the tensors that go with it): a float32/float64 CPU tensor."""
    return x.dtype in _TYPES and x.device.type == "cpu"


_LIBS: dict[str, ctypes.CDLL] = {}  # per precision suffix, built once per process
_LOCK = threading.Lock()
_pending: list[threading.Thread] = []  # a build started by build(wait=False)
_failed: list[ConfigError] = []  # ... and its error


def _library(sfx: str = "f32") -> ctypes.CDLL:
    """The kernels of one precision (``f32`` or ``f64``), compiled and loaded at the first call."""
    with _LOCK:
        if sfx not in _LIBS:
            _LIBS[sfx] = _compile(sfx)
        return _LIBS[sfx]


def _compile(sfx: str) -> ctypes.CDLL:
    cc = compiler()
    if cc is None:
        raise ConfigError("search_step=fused builds its CPU kernels with a C compiler and none is on PATH "
                          "(install gcc, set CC, or use trainer.search_step=eager)")
    with tempfile.TemporaryDirectory(prefix="jpq-kernels-") as tmp:  # private: mode 0700
        out = Path(tmp) / "native.so"
        cmd = [*cc, *CFLAGS, f"-DJPQ_{sfx.upper()}", str(_SRC), "-o", str(out)]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True)
        except OSError as e:
            raise ConfigError(f"search_step=fused: cannot run the C compiler {cc[0]}: {e}") from e
        if r.returncode != 0:
            lines = r.stderr.strip().splitlines() or [f"exit status {r.returncode}"]
            first = next((ln for ln in lines if "error" in ln), lines[0])
            raise ConfigError(f"search_step=fused: compiling the CPU kernels with {cc[0]} failed: {first} "
                              "(or use trainer.search_step=eager)")
        try:
            return ctypes.CDLL(str(out))  # mapped now; the file goes with the folder
        except OSError as e:  # e.g. a temporary folder mounted noexec
            raise ConfigError(
                f"search_step=fused: cannot load the CPU kernels compiled in {tmp} ({e}); set TMPDIR to "
                "a folder that allows programs, or use trainer.search_step=eager"
            ) from e


def build(*, wait: bool = True) -> None:
    """Compile and load the float32 kernels (once per process; float64 ones are built at their first use);
    a ConfigError in one line if that fails. ``wait=False`` starts the build in the background and
    returns (the sweep pre-check composes its jobs meanwhile); the next ``build()`` waits for it and
    raises its error."""
    if not wait:
        if not _pending and "f32" not in _LIBS:
            t = threading.Thread(target=_build_in_background, name="jpq-kernels", daemon=True)
            _pending.append(t)
            t.start()
        return
    join()
    _library("f32")


def join() -> None:
    """Wait for a build started by ``build(wait=False)`` and raise its error; nothing if none was."""
    while _pending:
        _pending.pop().join()
    if _failed:
        raise _failed.pop()


def _build_in_background() -> None:
    try:
        _library("f32")
    except ConfigError as e:
        _failed.append(e)


@functools.cache
def _kernels(dtype: torch.dtype) -> dict[str, Any]:
    sfx, t = _TYPES[dtype]
    sig = {
        "pact_fwd": (_P, _P, _I64, _P, _P, _P, _I),
        "pact_bwd": (_P, _P, _P, _I64, _P, _P, _P, _I),  # sums: two T values
        "mixed_fwd": (_P, _P, _I64, _I, _P, _P, _P, _P, _P, _I, _I),
        "mixed_bwd": (_P, _P, _P, _I64, _I, _P, _P, _P, _P, _P, _P, _P, _I, _I),
        "params_fwd": (_P, _P, _P, t, _P, _P, _P, _I64, _I64, _I, _I, t, _P, _P, _P, _P, _P, _I),
        "params_bwd": (_P, _P, _P, _P, t, _P, _P, _P, _P, _I64, _I64, _I, _I, t, _P, _P, _P, _P, _I),
        "net_params_fwd": (_I, _P, t, _I),
        "net_params_bwd": (_I, _P, t, _I),
    }
    lib = _library(sfx)
    out = {}
    for name, args in sig.items():
        fn = getattr(lib, f"{name}_{sfx}")
        fn.argtypes, fn.restype = args, None
        out[name] = fn
    return out


@functools.cache
def _fma() -> int:
    """1 where PyTorch's vectorised CPU kernels fuse multiply-add (every capability but DEFAULT): the
    mixture's running sums then use it too, so that they are the eager sums bit for bit."""
    return int(torch.backends.cpu.get_cpu_capability() != "DEFAULT")


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _c(t: Tensor) -> Tensor:
    return t.detach().contiguous()


def _as(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``t`` contiguous in ``dtype`` (the kernels read clips and levels through pointers)."""
    return t.contiguous() if t.dtype == dtype else t.to(dtype).contiguous()


class NativePact(torch.autograd.Function):
    """One precision (``theta = 1``); ``lo``/``hi`` (1,) or None for ``lo``, ``level`` 0-dim or (1,)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, level: Tensor) -> Tensor:  # type: ignore[override]
        xc = x.contiguous()
        lo_t, hi_t, lv = None if lo is None else _as(lo, x.dtype), _as(hi, x.dtype), _as(level, x.dtype)
        y = torch.empty_like(xc)  # (converted tensors are held in variables: the kernel reads them)
        _kernels(x.dtype)["pact_fwd"](xc.data_ptr(), y.data_ptr(), xc.numel(), _ptr(lo_t), hi_t.data_ptr(),
                                      lv.data_ptr(), torch.get_num_threads())
        ctx.save_for_backward(xc, hi_t, lo_t)
        ctx.clip_shape = hi.shape
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, hi, lo = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = grad.contiguous()
        gx = torch.empty_like(x) if need[0] else None
        sums = torch.empty(2, *ctx.clip_shape, dtype=x.dtype)  # the clip gradients (hi, lo)
        _kernels(x.dtype)["pact_bwd"](g.data_ptr(), x.data_ptr(), _ptr(gx), x.numel(), _ptr(lo),
                                      hi.data_ptr(), sums.data_ptr(), torch.get_num_threads())
        g_hi, g_lo = sums.unbind(0)
        return gx, g_lo if lo is not None and need[1] else None, g_hi if need[2] else None, None


class NativeMixedPact(torch.autograd.Function):
    """Mixture over ``P > 1`` precisions; ``lo``/``hi``/``theta``/``levels`` are (P,)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: Tensor | None, hi: Tensor, theta: Tensor, levels: Tensor):  # type: ignore[override]
        p = levels.shape[0]
        if p > 8:
            raise ValueError(f"the fused mixture takes at most 8 precisions, got {p}")
        dt = x.dtype
        his, los, th, lv = _as(hi, dt), None if lo is None else _as(lo, dt), _as(theta, dt), _as(levels, dt)
        scales = torch.empty(p, dtype=dt)  # S_j, written by the kernel
        xc = x.contiguous()
        y = torch.empty_like(xc)
        _kernels(dt)["mixed_fwd"](xc.data_ptr(), y.data_ptr(), xc.numel(), p, _ptr(los), his.data_ptr(),
                                  lv.data_ptr(), th.data_ptr(), scales.data_ptr(), _fma(),
                                  torch.get_num_threads())
        ctx.save_for_backward(xc, los, his, scales, th)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, lo, hi, scales, theta = ctx.saved_tensors
        need = ctx.needs_input_grad
        p = theta.shape[0]
        g = grad.contiguous()
        gx = torch.empty_like(x) if need[0] else None
        out = torch.empty(3, p, dtype=x.dtype)
        _kernels(x.dtype)["mixed_bwd"](g.data_ptr(), x.data_ptr(), _ptr(gx), x.numel(), p, _ptr(lo),
                                       hi.data_ptr(), scales.data_ptr(), theta.data_ptr(), out[0].data_ptr(),
                                       out[1].data_ptr(), out[2].data_ptr(), _fma(), torch.get_num_threads())
        g_hi, g_lo, g_th = out.unbind(0)
        return (gx, g_lo if lo is not None and need[1] else None,
                g_hi if need[2] else None, g_th if need[3] else None, None)


class NativeLayerParams(torch.autograd.Function):
    """``(W_eff, b_eff)`` of a searchable layer: the values of :func:`jpq.quant.params.mixed_layer_params`."""

    @staticmethod
    def forward(ctx, w, b, theta, s_a, levels, upper, nonzero, skip: int):  # type: ignore[override]
        c_out, p = w.shape[0], theta.shape[0]
        wc, bc, th = _c(w), _c(b), _c(theta)
        lv, up, nz = (t if t.dtype == w.dtype else t.to(w.dtype) for t in (levels, upper, nonzero))
        s_a_f = float(s_a)
        w_eff = torch.empty_like(wc)
        buf = torch.empty(p + 3, c_out, dtype=w.dtype)  # s (P rows), s_w, qb, b_eff
        at, row = buf.data_ptr(), c_out * buf.element_size()
        _kernels(w.dtype)["params_fwd"](
            wc.data_ptr(), bc.data_ptr(), th.data_ptr(), s_a_f, lv.data_ptr(), up.data_ptr(),
            nz.data_ptr(), c_out, wc.numel() // c_out, p, skip, _ATOL, w_eff.data_ptr(), at + (p + 2) * row,
            at, at + p * row, at + (p + 1) * row, torch.get_num_threads(),
        )
        ctx.save_for_backward(wc, th, buf, up)
        ctx.s_a, ctx.skip, ctx.sa_shape = s_a_f, skip, s_a.shape
        return w_eff, buf[p + 2]

    @staticmethod
    def backward(ctx, g_w: Tensor, g_b: Tensor):  # type: ignore[override]
        w, theta, buf, up = ctx.saved_tensors
        need = ctx.needs_input_grad
        p, c_out = theta.shape
        gw, gb = g_w.contiguous(), g_b.contiguous()
        grad_w = torch.empty_like(w) if need[0] else None
        grad_b = torch.empty_like(gb) if need[1] else None
        grad_theta = torch.empty_like(theta) if need[2] else None
        grad_sa = torch.empty(ctx.sa_shape, dtype=w.dtype)
        at, row = buf.data_ptr(), c_out * buf.element_size()
        _kernels(w.dtype)["params_bwd"](
            gw.data_ptr(), gb.data_ptr(), w.data_ptr(), theta.data_ptr(), ctx.s_a, up.data_ptr(),
            at, at + p * row, at + (p + 1) * row, c_out, w.numel() // c_out, p, ctx.skip,
            _ATOL, _ptr(grad_w), _ptr(grad_b), _ptr(grad_theta), grad_sa.data_ptr(), torch.get_num_threads(),
        )
        return (grad_w, grad_b, grad_theta, grad_sa if need[3] else None,
                None, None, None, None)


class NetPlan:
    """The fixed part of :class:`NativeNetParams`' call tables for one network: per layer (P, C, K) and
    its precision grid ``(levels, upper, nonzero, skip)`` in the weights' dtype (kept alive here)."""

    def __init__(self, shapes: list[tuple[int, int, int]], grids: list[tuple[Tensor, Tensor, Tensor, int]]):
        n = len(shapes)
        self.grids = grids
        self.rows = [(p, c) for p, c, _ in shapes]
        sizes = np.array([(p + 3) * c for p, c, _ in shapes])
        start = np.cumsum(sizes) - sizes
        ps, cs = np.array([p for p, _, _ in shapes]), np.array([c for _, c, _ in shapes])
        # element offsets in the forward's buffer of small per-layer results: b_eff, s, s_w, qb
        self.small_at = np.stack([start + (ps + 2) * cs, start, start + ps * cs, start + (ps + 1) * cs], 1)
        self.small_size = int(sizes.sum())
        self.b_eff_at = [(int(a), int(a + c)) for a, c in zip(self.small_at[:, 0], cs, strict=True)]
        self.fwd = np.zeros((n, 16), dtype=np.int64)  # net_params_fwd's table; 0 where filled per call
        self.bwd = np.zeros((n, 17), dtype=np.int64)
        for i, ((p, c, k), (lv, up, nz, skip)) in enumerate(zip(shapes, grids, strict=True)):
            self.fwd[i, 4:11] = (lv.data_ptr(), up.data_ptr(), nz.data_ptr(), c, k, p, skip)
            self.bwd[i, 5] = up.data_ptr()
            self.bwd[i, 9:13] = (c, k, p, skip)
        self.cs = [int(c) for c in cs]


class NativeNetParams(torch.autograd.Function):
    """Every layer's ``(W_eff, b_eff)`` in one kernel call forward and one backward: the values and
    gradients of :class:`NativeLayerParams` layer by layer, without its per-layer call overhead.

    ``apply(plan, *ws, *bs, *thetas, *s_as)``: a :class:`NetPlan` and, per layer, the weight (C, ...),
    bias (C,), theta (P, C) and the input's scale ``s_a`` (0-dim), all in one dtype; returns
    ``W_eff_1, ..., W_eff_L, b_eff_1, ..., b_eff_L``.
    """

    @staticmethod
    def forward(ctx, plan: NetPlan, *tensors):  # type: ignore[override]
        n = len(plan.rows)
        ws, bs, ths, sas = ([t.contiguous() for t in tensors[i * n : (i + 1) * n]] for i in range(4))
        dtype = ws[0].dtype
        small = torch.empty(plan.small_size, dtype=dtype)  # s, s_w, qb, b_eff per layer
        w_effs = [torch.empty_like(w) for w in ws]
        tab = plan.fwd.copy()
        tab[:, 0] = [w.data_ptr() for w in ws]
        tab[:, 1] = [b.data_ptr() for b in bs]
        tab[:, 2] = [t.data_ptr() for t in ths]
        tab[:, 3] = [t.data_ptr() for t in sas]
        tab[:, 11] = [t.data_ptr() for t in w_effs]
        tab[:, 12:16] = small.data_ptr() + plan.small_at * small.element_size()
        _kernels(dtype)["net_params_fwd"](n, tab.ctypes.data, _ATOL, torch.get_num_threads())
        bwd = plan.bwd.copy()
        bwd[:, 2:5] = tab[:, [0, 2, 3]]  # w, theta, s_a
        bwd[:, 6:9] = tab[:, 13:16]  # s, s_w, qb
        ctx.save_for_backward(small, *ws, *ths, *sas)
        ctx.plan, ctx.tab = plan, bwd
        return (*w_effs, *(small[a:b] for a, b in plan.b_eff_at))

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        saved = ctx.saved_tensors  # checks that nothing saved was changed in place
        plan, tab = ctx.plan, ctx.tab
        n = len(plan.rows)
        ws = saved[1 : 1 + n]
        dtype, need = ws[0].dtype, ctx.needs_input_grad[1:]
        g_ws = [g.contiguous() for g in grads[:n]]
        g_bs = [g.contiguous() for g in grads[n:]]
        grad_ws = [torch.empty_like(w) for w in ws]
        grad_bs = [torch.empty(c, dtype=dtype) for c in plan.cs]
        grad_ths = [torch.empty(r, dtype=dtype) if need[2 * n + i] else None for i, r in enumerate(plan.rows)]
        grad_sas = torch.empty(n, dtype=dtype)
        tab[:, 0] = [g.data_ptr() for g in g_ws]
        tab[:, 1] = [g.data_ptr() for g in g_bs]
        tab[:, 13] = [g.data_ptr() for g in grad_ws]
        tab[:, 14] = [g.data_ptr() for g in grad_bs]
        tab[:, 15] = [0 if g is None else g.data_ptr() for g in grad_ths]  # NULL: no theta gradient
        tab[:, 16] = grad_sas.data_ptr() + np.arange(n) * grad_sas.element_size()
        _kernels(dtype)["net_params_bwd"](n, tab.ctypes.data, _ATOL, torch.get_num_threads())
        out: list[Tensor | None] = [None]
        for group, i0 in ((grad_ws, 0), (grad_bs, n), (grad_ths, 2 * n), (grad_sas.unbind(0), 3 * n)):
            out += [g if need[i0 + i] else None for i, g in enumerate(group)]
        return tuple(out)
