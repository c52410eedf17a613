"""Integer-only C export with built-in verification (``jpq export RUN_DIR --target c``).

``export_c`` integerizes the network (:mod:`jpq.export.integer`), writes the C code
(:mod:`jpq.export.cgen`) into ``out_dir``, compiles it with ``cc -O2 -std=c99 -Wall -Werror``, runs the host
test program on the verification inputs and requires every int32 logit to equal the integer PyTorch
reference (:mod:`jpq.export.intref`). It reports the reference's prediction agreement and max |dlogit|
against the fake-quant network, the flash (packed weight bytes = ``size_bits / 8`` plus block padding,
the other constants, and the code, read from the object files) and the RAM (scratch), and the host
inference time per input. The record is written to ``verify_c.json``.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from torch import Tensor

from jpq.errors import JpqError
from jpq.export.cgen import SOURCES, write_c
from jpq.export.integer import AddOp, ConvOp, PoolOp, integerize
from jpq.export.intref import compare_fake_quant, reference_logits
from jpq.io import atomic_write_json
from jpq.search import SearchableNet

CFLAGS = ("-O2", "-std=c99", "-Wall", "-Werror")
#: minimum prediction agreement of the integer network with the fake-quant one
MIN_AGREEMENT = 0.99


class ToolchainError(JpqError):
    """The C compiler is missing or rejects the generated code."""


def find_compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise ToolchainError(f"no C compiler: {cc!r} is not on PATH (install gcc or clang, or set CC)")
    return path


def elf_sections(path: Path) -> dict[str, int]:
    """Bytes per kind of section of an ELF object: ``code`` (.text), ``const`` (.rodata, .data.rel.ro),
    ``data`` (.data, .bss). Raises :class:`ToolchainError` for a non-ELF file."""
    blob = path.read_bytes()
    if blob[:4] != b"\x7fELF":
        raise ToolchainError(f"{path.name} is not an ELF object: flash sizes need an ELF toolchain")
    is64, little = blob[4] == 2, blob[5] == 1
    e = "<" if little else ">"
    if is64:
        shoff, = struct.unpack_from(e + "Q", blob, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", blob, 0x3A)
    else:
        shoff, = struct.unpack_from(e + "I", blob, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", blob, 0x2E)

    def header(i: int) -> tuple[int, int, int, int]:  # name, type, offset, size
        base = shoff + i * shentsize
        if is64:
            name, typ = struct.unpack_from(e + "II", blob, base)
            off, size = struct.unpack_from(e + "QQ", blob, base + 0x18)
        else:
            name, typ = struct.unpack_from(e + "II", blob, base)
            off, size = struct.unpack_from(e + "II", blob, base + 0x10)
        return name, typ, off, size

    strtab_off = header(shstrndx)[2]
    out = {"code": 0, "const": 0, "data": 0}
    for i in range(shnum):
        name_off, _, _, size = header(i)
        name = blob[strtab_off + name_off : blob.index(b"\0", strtab_off + name_off)].decode()
        if name.startswith(".text"):
            out["code"] += size
        elif name.startswith((".rodata", ".data.rel.ro")):
            out["const"] += size
        elif name.startswith((".data", ".bss")):
            out["data"] += size
    return out


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    except OSError as e:
        raise ToolchainError(f"{what} failed: {e}") from e
    if res.returncode != 0:
        first = (res.stderr or res.stdout).strip().splitlines()
        raise ToolchainError(f"{what} failed: {first[0] if first else f'exit {res.returncode}'}")
    return res.stdout


def compile_c(out_dir: Path, cc: str | None = None) -> Path:
    """Compile the export with ``cc -O2 -std=c99 -Wall -Werror``; returns the host test program."""
    cc = cc or find_compiler()
    for src in (*SOURCES, "main.c"):
        _run([cc, *CFLAGS, "-c", src, "-o", src[:-2] + ".o"], out_dir, f"compiling {src}")
    exe = out_dir / "jpq_test"
    objs = [s[:-2] + ".o" for s in ("main.c", *SOURCES)]
    _run([cc, *CFLAGS, "-o", exe.name, *objs], out_dir, "linking jpq_test")
    return exe


def run_c(exe: Path, codes: np.ndarray, num_outputs: int) -> tuple[np.ndarray, float]:
    """int32 logits of the compiled program for ``uint8`` codes (N, input size), and µs per input."""
    work = exe.parent
    (work / "test_inputs.bin").write_bytes(np.ascontiguousarray(codes, dtype=np.uint8).tobytes())
    out = _run([str(exe.resolve()), "test_inputs.bin", "test_logits.bin"], work, "running jpq_test")
    logits = np.fromfile(work / "test_logits.bin", dtype="<i4").reshape(-1, num_outputs)
    us = next(float(line.split()[1]) for line in out.splitlines() if line.startswith("us_per_input"))
    return logits, us


def export_c(
    net: SearchableNet,
    out_dir: str | Path,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    size_bits_run: float | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Integer-only C export of a discretized network into ``out_dir``, verified on inputs ``x``
    (module docstring). Returns the record written to ``verify_c.json`` (``ok``: every check passed)."""
    from jpq.cost import evaluate_all

    if not net.discrete:
        raise ValueError("export_c needs a discretized network (call net.discretize() after the search)")
    cc = find_compiler()  # before any work: a missing compiler is one line
    out = Path(out_dir)
    if next(net.parameters()).device.type != "cpu":
        net = copy.deepcopy(net).cpu()
    net.eval()
    x = x.detach().cpu()
    prog = integerize(net)
    sizes = write_c(prog, out)
    exe = compile_c(out, cc)
    codes, ref = reference_logits(prog, x)
    got, us = run_c(exe, codes, prog.num_outputs)
    fq = compare_fake_quant(net, ref, x, prog.logit_scale)
    objs = {name: elf_sections(out / (name[:-2] + ".o")) for name in SOURCES}
    size_bits = float(evaluate_all(net.layer_specs(fresh=True))["size_bits"])
    rec: dict[str, Any] = {
        "export_dir": str(out),
        "samples": int(codes.shape[0]),
        "c_bit_exact": bool(got.shape == ref.shape and np.array_equal(got, ref)),
        "c_mismatches": int((got != ref).any(axis=1).sum()) if got.shape == ref.shape else len(codes),
        "fake_quant": fq,
        "size_bits": size_bits,
        "size_bits_run": size_bits_run,
        "weight_bytes": sizes.weight_bytes,
        "padding_bits": sizes.padding_bits,
        "param_bytes": sizes.param_bytes,
        "flash_const_bytes": objs["weights.c"]["const"] + objs["model.c"]["const"],
        "flash_code_bytes": objs["model.c"]["code"] + objs["jpq_kernels.c"]["code"],
        "static_ram_bytes": sum(o["data"] for o in objs.values()),
        "scratch_bytes": sizes.scratch_bytes,
        "row_buffer_bytes": sizes.row_buffer_bytes,
        "us_per_input": us,
        "logit_scale": prog.logit_scale,
        "ops": [_op_summary(op) for op in prog.ops],
    }
    if labels is not None:
        hits = ref.argmax(1) == labels.cpu().numpy()
        rec["accuracy_int"] = 100.0 * float(hits.mean()) if len(ref) else None
    rec["checks"] = _checks(rec)
    rec["ok"] = all(r["ok"] for r in rec["checks"])
    atomic_write_json(out / "verify_c.json", rec)
    _print(rec, console)
    return rec


def _op_summary(op: ConvOp | AddOp | PoolOp) -> dict[str, Any]:
    out: dict[str, Any] = {"name": op.name, "op": type(op).__name__[:-2].lower(), "shape": list(op.y.shape)}
    if isinstance(op, ConvOp | PoolOp):
        out["kind"] = op.kind
    if isinstance(op, ConvOp):
        out["blocks"] = [{"w_bits": b.bits, "rows": b.stop - b.start, "bytes": len(b.data),
                          "padding_bits": b.padding_bits} for b in op.blocks]
    return out


def _checks(rec: dict[str, Any]) -> list[dict[str, Any]]:
    fq = rec["fake_quant"]
    exact_bits = rec["size_bits"] + rec["padding_bits"]
    rows = [
        ("C vs integer reference", f"{rec['samples'] - rec['c_mismatches']}/{rec['samples']} inputs",
         "bit-exact", rec["c_bit_exact"]),
        ("agreement with fake-quant", f"{fq['agreement']:.2%} (max Δ {fq['max_abs_dlogit']:.2g})",
         f">= {MIN_AGREEMENT:.0%}", fq["agreement"] >= MIN_AGREEMENT),
        ("bytes = size_bits/8 + pad",
         f"{rec['weight_bytes']:,} / {rec['size_bits'] / 8:,.1f} + {rec['padding_bits'] / 8:g}", "equal",
         math.isclose(8 * rec["weight_bytes"], exact_bits, rel_tol=0, abs_tol=0.5)),
    ]
    if rec.get("size_bits_run") is not None:
        rows.append(("size_bits vs the run's", f"{rec['size_bits']:,.0f} / {rec['size_bits_run']:,.0f}",
                     "equal", math.isclose(rec["size_bits"], rec["size_bits_run"], rel_tol=0, abs_tol=0.5)))
    return [{"check": c, "value": v, "criterion": k, "ok": bool(ok)} for c, v, k, ok in rows]


def _print(rec: dict[str, Any], console: Console | None) -> None:
    con = console or Console(stderr=True)
    t = Table(title=f"C export {rec['export_dir']}")
    for col in ("check", "value", "criterion", "status"):
        t.add_column(col, justify="left" if col == "check" else "right")
    for r in rec["checks"]:
        t.add_row(r["check"], r["value"], r["criterion"], "[green]ok[/]" if r["ok"] else "[red]FAIL[/]")
    con.print(t)
    s = Table(title="deployment: flash and RAM in bytes, host time")
    for col in ("weights", "other const", "code", "scratch", "static RAM", "µs/input"):
        s.add_column(col, justify="right")
    s.add_row(
        f"{rec['weight_bytes']:,}",
        f"{rec['flash_const_bytes'] - rec['weight_bytes']:,}",
        f"{rec['flash_code_bytes']:,}",
        f"{rec['scratch_bytes']:,}",
        f"{rec['static_ram_bytes']:,}",
        f"{rec['us_per_input']:.1f}",
    )
    con.print(s)
    if rec.get("accuracy_int") is not None:
        con.print(f"integer network accuracy: {rec['accuracy_int']:.2f} % on {rec['samples']} inputs")


def export_run_c(
    run_dir: str | Path, *, max_samples: int | None = None, console: Console | None = None
) -> dict[str, Any]:
    """The C export of a finished run into ``RUN_DIR/export/c/``, verified on its test split
    (``max_samples`` caps it). Raises :class:`~jpq.errors.RunDirError` for a run without a fine-tune."""
    from jpq.export.export import load_test_split, read_result
    from jpq.export.load import load_run, run_config

    run_dir = Path(run_dir)
    find_compiler()
    net = load_run(run_dir)
    cfg = run_config(run_dir)
    result = read_result(run_dir)
    x, y = load_test_split(cfg, run_dir, max_samples)
    out = run_dir / "export" / "c"
    return export_c(net, out, x, y, size_bits_run=result.get("size_bits"), console=console)
