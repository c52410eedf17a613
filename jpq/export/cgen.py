"""C99 code generation of an :class:`~jpq.export.integer.IntProgram` (docs/method.md §8, deployment).

``write_c(prog, out_dir)`` writes

* ``model.h`` — ``void jpq_model_run(const uint8_t *in, int32_t *out, uint8_t *scratch)`` and the sizes
  (``JPQ_INPUT_SIZE``, ``JPQ_OUTPUT_SIZE``, ``JPQ_SCRATCH_SIZE``, ``JPQ_LOGIT_SCALE``);
* ``weights.c`` / ``weights.h`` — every constant: the bit-packed weight blocks (``uint8_t`` arrays, one per
  precision block), the int32 biases and their int8 shifts, the int32 multipliers and int8 shifts, the layer
  descriptors;
* ``model.c`` — the network as a sequence of kernel calls on fixed offsets of ``scratch``;
* the kernel library ``jpq_kernels.c``/``.h``, the host test ``main.c`` and a ``Makefile``.

Scratch layout: one int8 row buffer (the longest unpacked weight row) at offset 0, then every activation
tensor at an offset chosen first-fit among the tensors alive at the same time (4-byte aligned). The input
and the logits live in the caller's ``in``/``out``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from jpq.export.integer import AddOp, ConvOp, IntProgram, ITensor, PoolOp

KERNEL_FILES = ("jpq_kernels.c", "jpq_kernels.h", "main.c")
SOURCES = ("model.c", "weights.c", "jpq_kernels.c")
MAKEFILE = """# jpq C export: `make` builds the host test program (usage: ./jpq_test IN_FILE OUT_FILE)
CC ?= cc
CFLAGS ?= -O2 -std=c99 -Wall -Werror
OBJS = model.o weights.o jpq_kernels.o

jpq_test: main.o $(OBJS)
\t$(CC) $(CFLAGS) -o $@ main.o $(OBJS)

.c.o:
\t$(CC) $(CFLAGS) -c $< -o $@

main.o model.o: model.h
model.o weights.o: weights.h jpq_kernels.h
jpq_kernels.o: jpq_kernels.h

clean:
\trm -f jpq_test *.o
"""


@dataclass
class CSizes:
    """Byte counts of the generated constants and the scratch."""

    weight_bytes: int  # the packed weight arrays
    padding_bits: int  # unused high bits of the last byte of every block
    param_bytes: int  # biases, multipliers, shifts
    scratch_bytes: int
    row_buffer_bytes: int


def _ident(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W", "_", name)
    out, i = base, 1
    while out in taken:
        out, i = f"{base}_{i}", i + 1
    taken.add(out)
    return out


_HEX = [f"0x{i:02x}" for i in range(256)]


def _array(ctype: str, name: str, values: np.ndarray | bytes, per_line: int = 16, c_suffix: str = "") -> str:
    vals = list(values) if isinstance(values, bytes) else [int(v) for v in np.asarray(values).reshape(-1)]

    def fmt(v: int) -> str:
        if isinstance(values, bytes):
            return _HEX[v]
        if c_suffix and v < 0:  # a negative literal is the negation of a positive one
            return f"(-{-v}{c_suffix})"
        return f"{v}{c_suffix}"

    lines = [", ".join(fmt(v) for v in vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(lines) if lines else "0"
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{\n    {body}\n}};\n"


def _reads(op: ConvOp | AddOp | PoolOp) -> list[ITensor]:
    return [op.a, op.b] if isinstance(op, AddOp) else [op.x]


def _buf(t: ITensor) -> str:
    return t.buffer or t.name


def plan_scratch(prog: IntProgram) -> tuple[dict[str, int], int, int]:
    """``(offset of every scratch tensor, scratch size, row buffer size)``: first-fit by liveness."""
    row = max((op.row_len for op in prog.ops if isinstance(op, ConvOp) and op.kind != "linear"), default=0)
    start = (row + 3) // 4 * 4
    assert prog.output is not None
    last: dict[str, int] = {}
    sizes: dict[str, int] = {}
    born: dict[str, int] = {}
    for i, op in enumerate(prog.ops):
        for t in _reads(op):
            last[_buf(t)] = i
        born[op.y.name], sizes[op.y.name] = i, op.y.nbytes
    last[_buf(prog.output)] = len(prog.ops)
    offsets: dict[str, int] = {}
    end = start
    for name in born:
        if name not in last:
            last[name] = born[name]  # never read (cannot happen in a connected graph)
        live = sorted(
            (offsets[o], offsets[o] + sizes[o])
            for o in offsets
            if born[o] <= last[name] and last[o] >= born[name]
        )
        off = start
        for lo, hi in live:
            if off + sizes[name] <= lo:
                break
            off = max(off, (hi + 3) // 4 * 4)
        offsets[name] = off
        end = max(end, off + sizes[name])
    return offsets, (end + 3) // 4 * 4, row


def _layer_c(op: ConvOp, ident: str) -> tuple[str, int, int]:
    """Constants and descriptor of one layer; returns (C text, packed weight bytes, parameter bytes)."""
    parts = []
    wbytes = 0
    for i, b in enumerate(op.blocks):
        parts.append(f"/* {op.name}: rows {b.start}..{b.stop - 1}, {b.bits}-bit weights */\n")
        parts.append(_array("uint8_t", f"{ident}_w{i}", b.data))
        wbytes += len(b.data)
    parts.append(_array("int32_t", f"{ident}_bias", op.bias))
    parts.append(_array("int8_t", f"{ident}_bias_shift", op.bias_shift))
    parts.append(_array("int32_t", f"{ident}_mult", op.mult))
    parts.append(_array("int8_t", f"{ident}_shift", op.shift))
    blocks = ",\n    ".join(
        f"{{{b.bits}, {b.start}, {b.stop}, {ident}_w{i}}}" for i, b in enumerate(op.blocks)
    )
    parts.append(f"static const jpq_block_t {ident}_blocks[{len(op.blocks)}] = {{\n    {blocks}\n}};\n")
    x, y = op.x.shape, op.y.shape
    if op.kind == "linear":
        geo = [op.x.numel, 1, 1, op.y.numel, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1]
    else:
        geo = [*x, *y, *op.kernel, *op.stride, *op.padding, *op.dilation]
    qmax = -1 if op.qmax is None else op.qmax
    fields = ", ".join(str(v) for v in [*geo, op.x.zp, qmax])
    parts.append(
        f"const jpq_layer_t jpq_layer_{ident} = {{\n    {fields},\n    {ident}_bias, {ident}_bias_shift, "
        f"{ident}_mult, {ident}_shift, {len(op.blocks)}, {ident}_blocks\n}};\n\n"
    )
    params = 4 * op.bias.size + op.bias_shift.size + 4 * op.mult.size + op.shift.size
    return "".join(parts), wbytes, params


def _call(op: ConvOp | AddOp | PoolOp, ptr: dict[str, str], idents: dict[str, str]) -> str:
    def p(t: ITensor) -> str:
        return ptr[_buf(t)]

    if isinstance(op, ConvOp):
        out = f"{p(op.y)}, 0" if op.y.dtype == "u8" else f"0, {p(op.y)}"
        lay = f"&jpq_layer_{idents[op.name]}"
        if op.kind == "linear":
            fn = "jpq_linear_u8" if op.x.dtype == "u8" else "jpq_linear_i32"
            return f"    {fn}({lay}, {p(op.x)}, {out});\n"
        fn = "jpq_dwconv" if op.kind == "dw" else "jpq_conv"
        return f"    {fn}({lay}, {p(op.x)}, {out}, wrow);\n"
    if isinstance(op, AddOp):
        ident = idents[op.name]
        return (f"    jpq_add({p(op.a)}, {p(op.b)}, {op.y.numel}, {ident}_value_a, {ident}_value_b, "
                f"0x{op.scale_bits:08x}u, 0x{op.clip_bits:08x}u, {p(op.y)});\n")
    (c, h, w), (_, oh, ow) = op.x.shape, op.y.shape
    kh, kw = op.kernel
    sh, sw = op.stride
    if op.kind == "max":
        ph, pw = op.padding
        return (f"    jpq_maxpool({p(op.x)}, {c}, {h}, {w}, {kh}, {kw}, {sh}, {sw}, {ph}, {pw}, {p(op.y)}, "
                f"{oh}, {ow});\n")
    return f"    jpq_sumpool({p(op.x)}, {c}, {h}, {w}, {kh}, {kw}, {sh}, {sw}, {p(op.y)}, {oh}, {ow});\n"


def _model_h(prog: IntProgram, scratch: int) -> str:
    x = prog.input
    m = prog.input_pact
    lo = "0" if m.clip_lo is None else f"{float(m.clip_lo):.9g}"
    return f"""/* jpq integer-only network (generated). All arithmetic is integer; no dynamic allocation.
 *
 * Input: {x.numel} uint8 codes, shape (C, H, W) = {x.shape}, channel-major. The code of a real input x is
 *   floor(S * clamp(x, {lo}, {float(m.clip):.9g})) - ({x.zp}),   S = {x.scale:.9g} (float32)
 * Output: {prog.num_outputs} int32 logits in class order; the real logit is out[k] / JPQ_LOGIT_SCALE.
 * Scratch: JPQ_SCRATCH_SIZE bytes, 4-byte aligned, owned by the caller.
 */
#ifndef JPQ_MODEL_H
#define JPQ_MODEL_H

#include <stdint.h>

#define JPQ_INPUT_C {x.shape[0]}
#define JPQ_INPUT_H {x.shape[1]}
#define JPQ_INPUT_W {x.shape[2]}
#define JPQ_INPUT_SIZE {x.numel}
#define JPQ_OUTPUT_SIZE {prog.num_outputs}
#define JPQ_SCRATCH_SIZE {scratch}
#define JPQ_LOGIT_SCALE {prog.logit_scale}

void jpq_model_run(const uint8_t *in, int32_t *out, uint8_t *scratch);

#endif
"""


def _model_c(prog: IntProgram, offsets: dict[str, int], idents: dict[str, str]) -> str:
    assert prog.output is not None
    lines = ['/* jpq integer-only network (generated): the layers in execution order. */\n',
             '#include "model.h"\n#include "jpq_kernels.h"\n#include "weights.h"\n\n']
    order = prog.output_order or list(range(prog.num_outputs))
    lines.append(_array("int16_t", "output_order", np.asarray(order)))
    for op in prog.ops:
        if isinstance(op, AddOp):
            lines.append(f"/* {op.name}: the real values of the operand codes, as binary32 bit patterns */\n")
            for side, values in (("a", op.value_a), ("b", op.value_b)):
                lines.append(_array("uint32_t", f"{idents[op.name]}_value_{side}", values, 8, "u"))
    lines.append("\nvoid jpq_model_run(const uint8_t *in, int32_t *out, uint8_t *scratch) {\n")
    ptr = {prog.input.name: "in"}
    taken: set[str] = set()
    uses_row = any(isinstance(op, ConvOp) and op.kind != "linear" for op in prog.ops)
    if uses_row:
        lines.append("    int8_t *wrow = (int8_t *)scratch;\n")
    for op in prog.ops:
        name, ctype = op.y.name, "uint8_t" if op.y.dtype == "u8" else "int32_t"
        ptr[name] = "t_" + _ident(name, taken)
        lines.append(f"    {ctype} *{ptr[name]} = ({ctype} *)(void *)(scratch + {offsets[name]});\n")
    lines.append("    int32_t k;\n")
    for op in prog.ops:
        lines.append(_call(op, ptr, idents))
    lines.append(f"    for (k = 0; k < JPQ_OUTPUT_SIZE; k++) {{\n"
                 f"        out[k] = {ptr[_buf(prog.output)]}[output_order[k]];\n    }}\n}}\n")
    return "".join(lines)


def write_c(prog: IntProgram, out_dir: str | Path) -> CSizes:
    """Write the C export of ``prog`` into ``out_dir`` (module docstring); returns the byte counts."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    offsets, scratch, row = plan_scratch(prog)
    taken: set[str] = set()
    idents = {op.name: _ident(op.name, taken) for op in prog.ops if isinstance(op, ConvOp | AddOp)}
    body, wbytes, params, pad = [], 0, 0, 0
    for op in prog.ops:
        if isinstance(op, ConvOp):
            text, w, p = _layer_c(op, idents[op.name])
            body.append(text)
            wbytes, params, pad = wbytes + w, params + p, pad + sum(b.padding_bits for b in op.blocks)
    layers = [idents[op.name] for op in prog.ops if isinstance(op, ConvOp)]
    decls = "".join(f"extern const jpq_layer_t jpq_layer_{i};\n" for i in layers)
    (out / "weights.h").write_text(
        "/* jpq integer-only network (generated): the layer descriptors. */\n#ifndef JPQ_WEIGHTS_H\n"
        f'#define JPQ_WEIGHTS_H\n\n#include "jpq_kernels.h"\n\n{decls}\n#endif\n'
    )
    (out / "weights.c").write_text(
        "/* jpq integer-only network (generated): bit-packed weights, bias offsets, fixed-point "
        f'multipliers and shifts. */\n#include "weights.h"\n\n{"".join(body)}'
    )
    (out / "model.h").write_text(_model_h(prog, scratch))
    (out / "model.c").write_text(_model_c(prog, offsets, idents))
    src = resources.files("jpq.export") / "ckernels"
    for name in KERNEL_FILES:
        (out / name).write_text((src / name).read_text())
    (out / "Makefile").write_text(MAKEFILE)
    return CSizes(wbytes, pad, params, scratch, row)
