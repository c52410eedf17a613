"""The integer PyTorch reference of an :class:`~jpq.export.integer.IntProgram`: exactly the arithmetic of
the generated C (int32 accumulators, 64-bit fixed-point requantization, floor shifts, saturation, the
float32 add emulated on bit patterns).

Convolutions run in float64 on integer values: every product and partial sum is an integer below 2^31
(checked when the program is built), hence exact in float64, and rounded back to int64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from jpq.export.integer import AddOp, ConvOp, IntProgram, ITensor, PoolOp, quantize_input
from jpq.export.softfloat import f32_add, f32_floor, f32_mul
from jpq.quant.fixed import requantize

_I32 = (-(2**31), 2**31 - 1)


def _as4d(v: Tensor, t: ITensor) -> Tensor:
    return v.reshape(v.shape[0], *t.shape)


def _conv(op: ConvOp, x: Tensor) -> Tensor:
    xs = (_as4d(x, op.x) + op.x.zp).double()
    w = op.w_int.double()
    if op.kind == "linear":
        acc = F.linear(xs.reshape(xs.shape[0], -1), w)
        acc = acc.reshape(acc.shape[0], -1, 1, 1)
    else:
        w4 = w if w.dim() == 4 else w.unsqueeze(2)  # Conv1d weights (C, Cin, k) -> (C, Cin, 1, k)
        acc = F.conv2d(xs, w4, None, op.stride, op.padding, op.dilation,
                       groups=xs.shape[1] if op.kind == "dw" else 1)
    acc = torch.round(acc).to(torch.int64)
    mult = torch.from_numpy(op.mult.astype(np.int64)).view(1, -1, 1, 1)
    shift = torch.from_numpy(op.shift.astype(np.int64)).view(1, -1, 1, 1)
    bias = torch.from_numpy(op.bias.astype(np.int64)).view(1, -1, 1, 1)
    y = requantize(acc, mult, shift, bias, torch.from_numpy(op.bias_shift.astype(np.int64)).view(1, -1, 1, 1))
    y = y.clamp(*_I32) if op.qmax is None else y.clamp(0, op.qmax)
    return y.reshape(y.shape[0], -1)


def add_codes(op: AddOp, a: Tensor, b: Tensor) -> Tensor:
    """The codes of an add: the fake-quant float32 add on bit patterns (:mod:`jpq.export.softfloat`)."""
    va = torch.from_numpy(op.value_a.astype(np.int64))[a]
    vb = torch.from_numpy(op.value_b.astype(np.int64))[b]
    x = torch.clamp(f32_add(va, vb), max=op.clip_bits)  # non-negative floats order as their bits
    return f32_floor(f32_mul(x, torch.tensor(op.scale_bits)))


def _pool(op: PoolOp, x: Tensor) -> Tensor:
    x4 = _as4d(x, op.x)
    if op.kind == "max":
        # padded positions never win (PyTorch pads with -inf; the C kernel skips them)
        y = F.max_pool2d(x4.double(), op.kernel, op.stride, op.padding)
    else:
        y = F.avg_pool2d(x4.double(), op.kernel, op.stride, 0, divisor_override=1)
    return torch.round(y).to(torch.int64).reshape(x.shape[0], -1)


def run_reference(prog: IntProgram, codes: np.ndarray) -> np.ndarray:
    """int32 logits (N, classes) in class order for ``uint8`` input codes (N, C*H*W)."""
    env: dict[str, Tensor] = {prog.input.name: torch.from_numpy(codes.astype(np.int64))}

    def get(t: ITensor) -> Tensor:
        return env[t.buffer or t.name]

    with torch.no_grad():
        for op in prog.ops:
            if isinstance(op, ConvOp):
                env[op.y.name] = _conv(op, get(op.x))
            elif isinstance(op, AddOp):
                env[op.y.name] = add_codes(op, get(op.a), get(op.b))
            else:
                env[op.y.name] = _pool(op, get(op.x))
    assert prog.output is not None
    out = get(prog.output)
    if prog.output_order is not None:
        out = out[:, prog.output_order]
    return out.numpy().astype(np.int32)


def reference_logits(prog: IntProgram, x: Tensor, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, int32 logits)`` of float inputs ``x`` through the integer reference."""
    codes = quantize_input(prog, x)
    outs = [run_reference(prog, codes[i : i + batch_size]) for i in range(0, codes.shape[0], batch_size)]
    return codes, np.concatenate(outs) if outs else np.zeros((0, prog.num_outputs), np.int32)


@torch.no_grad()
def compare_fake_quant(net: Any, logits_int: np.ndarray, x: Tensor, logit_scale: float) -> dict[str, float]:
    """Prediction agreement and max |dlogit| of the integer logits (dequantized) against the fake-quant
    network on the same inputs."""
    ref = torch.cat([net(x[i : i + 256].float()) for i in range(0, x.shape[0], 256)]).double()
    got = torch.from_numpy(logits_int.astype(np.float64)) / logit_scale
    d = (ref - got).abs()
    return {
        "agreement": float((ref.argmax(1) == got.argmax(1)).double().mean()) if d.numel() else 1.0,
        "max_abs_dlogit": float(d.max()) if d.numel() else 0.0,
        "samples": int(x.shape[0]),
    }
