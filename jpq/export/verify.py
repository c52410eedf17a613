"""Verification of an export against the discrete fake-quant network (docs/method.md §8 item 6).

The exported model computes the same function as the discrete fake-quant network, but not bit for bit in
float32 (see :mod:`jpq.export.export`), so the correctness check repeats the export on a float64 copy of
the network and compares both in float64; the float32 ``model.pt``/``model.onnx`` are reported with their
prediction agreement and max |dlogit|. The packing, size and channel-count checks are exact.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, fx, nn

from jpq.export.manifest import read_weights
from jpq.export.plan import ExportedLayer, GroupPlan, act_info, export_layers, plan_groups
from jpq.export.surgery import pruned_graph
from jpq.search import SearchableNet

#: tolerance of the float64 correctness check (1e-4 on exported vs fake-quant logits, docs/method.md §8)
F64_ATOL = 1e-4
#: minimum float32 prediction agreement for a passing export (floor flips, :mod:`jpq.export.export`)
MIN_AGREEMENT = 0.99
#: float32 |dlogit| below which a sample counts as numerically identical
CLOSE_ATOL = 1e-4


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat([model(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)]).float()


def _compare(ref: Tensor, out: Tensor) -> dict[str, float]:
    d = (ref.double() - out.double()).abs()
    per = d.amax(dim=1)
    return {
        "max_abs_dlogit": float(per.max()) if per.numel() else 0.0,
        "mean_abs_dlogit": float(d.mean()) if d.numel() else 0.0,
        "agreement": float((ref.argmax(1) == out.argmax(1)).double().mean()) if per.numel() else 1.0,
        "frac_close": float((per <= CLOSE_ATOL).double().mean()) if per.numel() else 1.0,
    }


def _accuracy(logits: Tensor, labels: Tensor | None) -> float | None:
    if labels is None:
        return None
    return 100.0 * float((logits.argmax(1).cpu() == labels.cpu()).double().mean())


def random_inputs(net: SearchableNet, n: int, seed: int = 0) -> Tensor:
    """Inputs spanning the input quantizer's range, when the caller gives none."""
    ph = next(node for node in net.net.graph.nodes if node.op == "placeholder")
    if "tensor_meta" not in ph.meta:
        raise ValueError("export_net: pass example_inputs (the network has no recorded input shape)")
    shape = tuple(ph.meta["tensor_meta"].shape[1:])
    info = act_info(net.input_quant)
    lo = info["clip_lo"] if info["clip_lo"] is not None else 0.0
    span = info["clip"] - lo
    g = torch.Generator().manual_seed(seed)
    return lo - 0.05 * span + 1.1 * span * torch.rand(n, *shape, generator=g)


def _double(net: SearchableNet) -> SearchableNet:
    """A float64 copy of the discrete fake-quant network (cached float32 thetas dropped)."""
    return copy.deepcopy(net).double().eval().discretize()


def verify_export(
    net: SearchableNet,
    model: nn.Module,
    onnx_path: Path | None,
    x: Tensor,
    labels: Tensor | None = None,
    *,
    batch_size: int = 256,
    f64_samples: int | None = 256,
) -> dict[str, Any]:
    """Predictions of the exported model (PyTorch, ONNX) against the discrete fake-quant network.

    * ``torch_f64``: both networks in float64 on the first ``f64_samples`` inputs; must agree to
      ``F64_ATOL`` (the export computes the same function);
    * ``torch_f32`` / ``onnx_f32``: float32 on every input: max/mean |dlogit|, prediction agreement
      (must reach ``MIN_AGREEMENT``) and the fraction of samples within ``CLOSE_ATOL``.
    """
    x = x.detach().cpu().float()
    ref = _logits(net, x, batch_size)
    exp = _logits(model, x, batch_size)
    out: dict[str, Any] = {"samples": int(x.shape[0]), "torch_f32": _compare(ref, exp)}
    n64 = x.shape[0] if f64_samples is None else min(f64_samples, x.shape[0])
    if n64 > 0:
        x64 = x[:n64].double()
        with torch.no_grad():
            # the export procedure applied to a float64 copy: same weights on both sides, so the two
            # differ only by float64 summation order (no PACT floor flips, module docstring)
            dnet = _double(net)
            dplans = plan_groups(dnet)
            dmodel = pruned_graph(dnet, dplans, export_layers(dnet, dplans))
            out["torch_f64"] = {**_compare(dnet(x64), dmodel(x64)), "samples": int(n64)}
    onnx_logits = None
    if onnx_path is not None:
        from jpq.export.onnx import onnx_predict

        onnx_logits = onnx_predict(onnx_path, x, batch_size=batch_size)
        out["onnx_f32"] = _compare(ref, onnx_logits)
    if labels is not None:
        out["accuracy"] = {
            "fake_quant": _accuracy(ref, labels),
            "torch": _accuracy(exp, labels),
            "onnx": _accuracy(onnx_logits, labels) if onnx_logits is not None else None,
        }
    return out


def checks(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the verification table: check, measured value, criterion, pass/fail."""
    packed = rec["packed_weight_bits"]

    def row(check: str, value: str, criterion: str, ok: bool) -> dict[str, Any]:
        return {"check": check, "value": value, "criterion": criterion, "ok": bool(ok)}

    rows = [
        row(
            "weight bits vs size cost (§5.2)",
            f"{packed:,} / {rec['size_bits']:,.0f}",
            "equal",
            math.isclose(packed, rec["size_bits"], rel_tol=0, abs_tol=0.5),
        )
    ]
    if rec.get("size_bits_run") is not None:
        rows.append(
            row(
                "weight bits vs run size_bits",
                f"{packed:,} / {rec['size_bits_run']:,.0f}",
                "equal",
                math.isclose(packed, rec["size_bits_run"], rel_tol=0, abs_tol=0.5),
            )
        )
    rows.append(
        row("unpack(pack) and int*scale", f"{rec['roundtrip_max_abs_err']:.3g}", "exact", rec["roundtrip_ok"])
    )
    rows.append(row("int32 biases saturated", str(rec["bias_saturated"]), "0", rec["bias_saturated"] == 0))
    rows.append(
        row("kept channel counts (§8)", "match" if rec["kept_ok"] else "differ", "match", rec["kept_ok"])
    )
    p = rec.get("predictions")
    if p:
        if "torch_f64" in p:
            f64 = p["torch_f64"]
            rows.append(
                row(
                    f"PyTorch f64 max|dlogit| ({f64['samples']})",
                    f"{f64['max_abs_dlogit']:.3g}",
                    f"<= {F64_ATOL:g}",
                    f64["max_abs_dlogit"] <= F64_ATOL,
                )
            )
        for key, label in (("torch_f32", "PyTorch"), ("onnx_f32", "ONNX")):
            if key in p:
                c = p[key]
                rows.append(
                    row(
                        f"{label} f32 agreement ({p['samples']})",
                        f"{c['agreement']:.2%} (max {c['max_abs_dlogit']:.2g})",
                        f">= {MIN_AGREEMENT:.0%}",
                        c["agreement"] >= MIN_AGREEMENT,
                    )
                )
    return rows


def print_report(rec: dict[str, Any], console: Console | None) -> None:
    con = console or Console(stderr=True)
    lt = Table(title=f"export {rec['export_dir']}")
    for col in ("layer", "op", "kept", "w8/w4/w2", "weight bits", "bytes", "pad bits"):
        lt.add_column(col, justify="left" if col in ("layer", "op") else "right")
    for lay in rec["layers"]:
        c = lay["rows_per_bits"]
        lt.add_row(
            lay["name"],
            lay["op"],
            f"{lay['kept']}/{lay['c_out']}",
            f"{c.get('8', 0)}/{c.get('4', 0)}/{c.get('2', 0)}",
            f"{lay['weight_bits']:,}",
            f"{lay['weight_bytes']:,}",
            str(lay["padding_bits"]),
        )
    con.print(lt)
    vt = Table(title="verification")
    for col in ("check", "value", "criterion", "status"):
        vt.add_column(col, justify="left" if col == "check" else "right")
    for r in rec["checks"]:
        vt.add_row(r["check"], r["value"], r["criterion"], "[green]ok[/]" if r["ok"] else "[red]FAIL[/]")
    con.print(vt)
    acc = (rec.get("predictions") or {}).get("accuracy")
    if acc:
        con.print("accuracy %: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items() if v is not None))


def roundtrip(export_dir: Path, layers: Sequence[ExportedLayer]) -> tuple[bool, float]:
    """Read ``weights.bin`` back: the same integers and bits per row, and ``w_int * w_scale`` equal to the
    exported weight; returns ``(ok, max |error|)``."""
    back = read_weights(export_dir)
    err = 0.0
    ok = True
    for lay in layers:
        b = back[lay.name]
        ok &= bool(np.array_equal(b["w_int"], lay.w_int.numpy()))
        ok &= list(b["w_bits"]) == lay.w_bits
        shape = (-1,) + (1,) * (lay.weight.dim() - 1)
        deq = torch.from_numpy(b["w_int"]).float() * torch.from_numpy(b["w_scale"]).view(shape)
        err = max(err, float((deq - lay.weight).abs().max()))
    return ok and err == 0.0, err


def channel_counts_match(net: SearchableNet, plans: Sequence[GroupPlan], model: fx.GraphModule) -> bool:
    """Every exported Conv/Linear has exactly the kept channel counts of the arch (§8 steps 3-4)."""
    mods = dict(model.named_modules())
    for li in net.layers:
        m = mods[li.name]
        kept = len(plans[li.group].order)
        kept_in = li.in_const if li.in_group is None else len(plans[li.in_group].order) * li.in_mult
        if isinstance(m, nn.Linear):
            ok = m.out_features == kept and m.in_features == kept_in
        else:
            assert isinstance(m, nn.Conv1d | nn.Conv2d)
            ok = m.out_channels == kept and m.in_channels == kept_in
            ok &= m.groups == (kept if li.op == "dw" else 1)
        if not ok:
            return False
    return True
