"""ONNX file of the exported network and its evaluation with onnxruntime (docs/method.md §8).

Choice: a **plain float32 graph** whose Conv/Gemm initializers are the fake-quantized (dequantized) weights
and biases, with every PACT activation written out as ``Clip -> Mul -> Floor -> Div`` (§2.2). No QDQ
(QuantizeLinear/DequantizeLinear) pairs: PACT floors where QuantizeLinear rounds half to even, and 2/4-bit
weights would need the int4/int2 types of recent opsets; the exact integers live in ``weights.bin``.

The file is produced by the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``):
the ``torch.export``-based one needs the ``onnxscript`` package, which jpq does not depend on.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

#: opset of the written files (Clip with tensor bounds needs >= 11; 17 is read by every current runtime)
ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def export_onnx(model: nn.Module, example: Tensor, path: str | Path, *, opset: int = ONNX_OPSET) -> Path:
    """Write ``model`` (float32, eval) to ``path`` with a dynamic batch axis; returns the path."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with warnings.catch_warnings():
        # the legacy exporter announces its deprecation; it is the one that works without onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example.detach().float().cpu(),),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load(str(path))
    proto.producer_name = "jpq"
    proto.doc_string = (
        "jpq export: physically pruned, precision-sorted network; float32 fake-quantized initializers; "
        "PACT activations as Clip/Mul/Floor/Div; packed integer weights in weights.bin (manifest.json)"
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def onnx_session(path: str | Path):  # noqa: ANN201 - onnxruntime.InferenceSession
    """A CPU onnxruntime session of ``path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def onnx_predict(path_or_session: object, x: Tensor, *, batch_size: int = 256) -> Tensor:
    """Logits of the ONNX model on ``x`` (float32, batched); returned as a CPU float32 tensor."""
    sess = onnx_session(path_or_session) if isinstance(path_or_session, str | Path) else path_or_session
    name = sess.get_inputs()[0].name  # type: ignore[attr-defined]
    outs = []
    xs = x.detach().float().cpu().numpy()
    for start in range(0, xs.shape[0], batch_size):
        outs.append(sess.run(None, {name: np.ascontiguousarray(xs[start : start + batch_size])})[0])  # type: ignore[attr-defined]
    return torch.from_numpy(np.concatenate(outs, axis=0))
