"""Export of a searched, fine-tuned network for deployment (docs/method.md §8 "Correct procedure").

The steps live in their own modules: the plan (permutations, pruned and integerized layers,
:mod:`jpq.export.plan`), the graph surgery (:mod:`jpq.export.surgery`), the packed weights and their
manifest (:mod:`jpq.export.manifest`) and the verification (:mod:`jpq.export.verify`). ``export_net``
runs them and writes into ``out_dir``:

* ``model.pt`` — the state_dict (tensors only, no pickled code) of the exported ``torch.fx.GraphModule``:
  plain ``nn.Conv2d``/``nn.Linear`` modules holding the fake-quantized (float) weights and biases, and
  small fixed :class:`~jpq.export.modules.Pact` modules for the activations (the classifier rows are
  reordered too, so an :class:`~jpq.export.modules.OutputOrder` gather restores the class order at the
  end); ``jpq.export.load.load_exported`` rebuilds the module from the run and loads it;
* ``model.onnx`` — the same graph for onnxruntime (see :mod:`jpq.export.onnx`);
* ``weights.bin`` + ``manifest.json`` — integer weights bit-packed per precision sub-block
  (:mod:`jpq.export.pack`), per-channel scales, biases (``int32`` at ``s_b = s_a * s_w`` and float),
  shapes, byte offsets, activation bits and clips, and the node list of the graph;
* ``verify.json`` — the checks of :func:`~jpq.export.verify.verify_export` (also printed as a table).

Numerics. The exported model computes the same function as the discrete fake-quant network, but not bit
for bit in float32: it sums each convolution over fewer, reordered channels, and PACT's floor turns a
one-ulp difference at a quantization boundary into a whole activation step (on 512 random inputs of a
ResNet-8, ~1 % of the samples get a logit off by ~1e-4; on a large test set a prediction may flip). So the
correctness check repeats the export on a float64 copy of the network and compares both in float64
(differences ~1e-16); the float32 ``model.pt``/``model.onnx`` are reported with their prediction agreement
and max |dlogit| against the float32 fake-quant network.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import Tensor, fx

from jpq.errors import RunDirError
from jpq.export.manifest import write_packed
from jpq.export.plan import ExportedLayer, GroupPlan, export_layers, plan_groups
from jpq.export.surgery import pruned_graph
from jpq.export.verify import (
    channel_counts_match,
    checks,
    print_report,
    random_inputs,
    roundtrip,
    verify_export,
)
from jpq.io import atomic_torch_save, atomic_write_bytes, atomic_write_json
from jpq.search import SearchableNet

#: ``format`` entry of ``export/model.pt``
MODEL_FORMAT = "jpq-export-model-1"


def _write_files(
    net: SearchableNet, out_dir: Path
) -> tuple[list[ExportedLayer], fx.GraphModule, dict[str, Any], list[GroupPlan]]:
    """Plan, prune, build and pack, then write ``model.pt``, ``weights.bin`` and ``manifest.json``;
    returns the layers, the exported graph, the manifest and the plans."""
    with torch.no_grad():
        plans = plan_groups(net)
        layers = export_layers(net, plans)
        model = pruned_graph(net, plans, layers)
        blob, manifest = write_packed(net, plans, layers, model)
    atomic_torch_save(out_dir / "model.pt", {"format": MODEL_FORMAT, "state_dict": model.state_dict()})
    atomic_write_bytes(out_dir / "weights.bin", blob)
    atomic_write_json(out_dir / "manifest.json", manifest)
    return layers, model, manifest, plans


def _layer_rows(manifest: dict[str, Any], arch: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer: kept rows of the original channels, rows per precision, weight bits, bytes, padding."""
    return [
        {
            "name": m["name"],
            "op": m["op"],
            "group": m["group"],
            "kept": m["weight_shape"][0],
            "c_out": arch["groups"][m["group"]]["channels"],
            "weight_shape": m["weight_shape"],
            "rows_per_bits": {str(s["w_bits"]): s["shape"][0] for s in m["sub_blocks"]},
            "weight_bits": m["weight_bits"],
            "weight_bytes": m["weight_bytes"],
            "padding_bits": m["padding_bits"],
        }
        for m in manifest["layers"]
    ]


def _record(
    out_dir: Path,
    manifest: dict[str, Any],
    arch: dict[str, Any],
    *,
    onnx: bool,
    size_bits: float,
    size_bits_run: float | None,
    roundtrip_ok: bool,
    roundtrip_max_abs_err: float,
    kept_ok: bool,
) -> dict[str, Any]:
    """The ``verify.json`` record before the predictions: files, formats, sizes and the exact checks."""
    totals = manifest["totals"]
    return {
        "export_dir": str(out_dir),
        "files": ["model.pt", "weights.bin", "manifest.json", "verify.json"]
        + (["model.onnx"] if onnx else []),
        "model_format": "state_dict of the exported torch.fx.GraphModule: jpq.export.load.load_exported",
        "onnx_format": "float32 initializers (fake-quantized values), PACT as Clip/Mul/Floor/Div; opset 17",
        "size_bits": size_bits,
        "size_bits_run": size_bits_run,
        "packed_weight_bits": totals["weight_bits"],
        "packed_weight_bytes_exact": totals["weight_bits"] / 8,
        "packed_weight_bytes": totals["weight_bytes"],
        "padding_bits": totals["padding_bits"],
        "weights_bin_bytes": totals["file_bytes"],
        "roundtrip_ok": bool(roundtrip_ok),
        "roundtrip_max_abs_err": roundtrip_max_abs_err,
        "bias_saturated": sum(lay["bias_saturated"] for lay in manifest["layers"]),
        "kept_ok": kept_ok,
        "layers": _layer_rows(manifest, arch),
        "predictions": None,
    }


def export_net(
    net: SearchableNet,
    out_dir: str | Path,
    *,
    example_inputs: Tensor | None = None,
    labels: Tensor | None = None,
    verify: bool = True,
    console: Console | None = None,
    size_bits_run: float | None = None,
    onnx: bool = True,
    batch_size: int = 256,
    f64_samples: int | None = 256,
) -> dict[str, Any]:
    """Export a discretized :class:`SearchableNet` into ``out_dir`` (see the module docstring).

    Args:
        net: the fine-tuned network after ``discretize()``; it is put in eval mode (a CUDA network is
            copied to the CPU first).
        example_inputs, labels: verification data (e.g. the test split); without inputs, 16 random
            inputs in the input quantizer's range are used (they also trace the ONNX export).
        verify: compare predictions (float64 check, float32 PyTorch and ONNX agreement); the packing,
            size and channel-count checks always run.
        size_bits_run: the run's reported ``size_bits`` (result.json), checked against the packed bits.
        onnx: write and check ``model.onnx``.
        f64_samples: how many inputs the float64 check uses (0 skips it; None = all).

    Returns the record also written to ``verify.json`` (``ok`` is True when every check passes).
    """
    if not net.discrete:
        raise ValueError("export_net needs a discretized network (call net.discretize() after the search)")
    from jpq.cost import evaluate_all

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if next(net.parameters()).device.type != "cpu":
        net = copy.deepcopy(net).cpu()
    net.eval()
    layers, model, manifest, plans = _write_files(net, out_dir)
    with torch.no_grad():
        size_bits = evaluate_all(net.layer_specs(fresh=True))["size_bits"]
    x = example_inputs if example_inputs is not None else random_inputs(net, 16)
    onnx_path = None
    if onnx:
        from jpq.export.onnx import export_onnx

        onnx_path = export_onnx(model, x[:2].float().cpu(), out_dir / "model.onnx")
    rt_ok, err = roundtrip(out_dir, layers)
    rec = _record(
        out_dir,
        manifest,
        net.arch(),
        onnx=onnx,
        size_bits=size_bits,
        size_bits_run=size_bits_run,
        roundtrip_ok=rt_ok,
        roundtrip_max_abs_err=err,
        kept_ok=channel_counts_match(net, plans, model),
    )
    if verify:
        rec["predictions"] = verify_export(
            net, model, onnx_path, x, labels, batch_size=batch_size, f64_samples=f64_samples
        )
    rec["checks"] = checks(rec)
    rec["ok"] = all(r["ok"] for r in rec["checks"])
    atomic_write_json(out_dir / "verify.json", rec)
    print_report(rec, console)
    return rec


def _resolve_data_dir(cfg: Any, run_dir: Path) -> str:
    """``cfg.data_dir`` as an absolute path: relative paths are taken from the run's working directory
    (Hydra's ``.hydra/hydra.yaml`` records it), else from the current one."""
    from omegaconf import OmegaConf

    data_dir = Path(str(cfg.data_dir)).expanduser()
    if data_dir.is_absolute():
        return str(data_dir)
    hy = run_dir / ".hydra" / "hydra.yaml"
    if hy.is_file():
        try:
            cwd = OmegaConf.load(hy).hydra.runtime.cwd
            cand = Path(str(cwd)) / data_dir
            if cand.exists():
                return str(cand)
        except Exception:  # noqa: BLE001 - an unreadable hydra.yaml only loses the hint
            pass
    return str(data_dir.resolve())


def read_result(run_dir: Path) -> dict[str, Any]:
    """``RUN_DIR/result.json``; :class:`RunDirError` when it is unreadable."""
    try:
        return json.loads((Path(run_dir) / "result.json").read_text())
    except (OSError, ValueError) as e:
        raise RunDirError(f"{run_dir}/result.json is unreadable: {e}") from e


def load_test_split(cfg: Any, run_dir: Path, max_samples: int | None) -> tuple[Tensor, Tensor]:
    """The run's test inputs and labels (at most ``max_samples``), read from its data folder without a
    download or progress bars."""
    from jpq.build import load_data

    cfg.data_dir = _resolve_data_dir(cfg, run_dir)
    if "download" in cfg.dataset:
        cfg.dataset.download = False
    cfg.progress = False
    data = load_data(cfg)
    x, y = data.test.x, data.test.y
    return (x, y) if max_samples is None else (x[:max_samples], y[:max_samples])


def export_run(
    run_dir: str | Path,
    *,
    verify: bool = True,
    console: Console | None = None,
    max_samples: int | None = None,
    onnx: bool = True,
) -> dict[str, Any]:
    """Export the fine-tuned network of a finished run into ``RUN_DIR/export/`` (what ``jpq export`` runs).

    Verification uses the run's test split (``max_samples`` caps it) and compares the packed size with the
    run's ``result.json``. Raises :class:`RunDirError` for a folder without a finished fine-tune or with a
    corrupt checkpoint.
    """
    from jpq.export.load import load_run, run_config

    run_dir = Path(run_dir)
    net = load_run(run_dir)
    cfg = run_config(run_dir)
    result = read_result(run_dir)
    x, y = load_test_split(cfg, run_dir, max_samples) if verify else (None, None)
    return export_net(
        net,
        run_dir / "export",
        example_inputs=x,
        labels=y,
        verify=verify,
        console=console,
        size_bits_run=result.get("size_bits"),
        onnx=onnx,
    )
