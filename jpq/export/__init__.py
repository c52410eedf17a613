"""Export of a searched network (docs/method.md §8): physically pruned, precision-sorted plain model, ONNX,
bit-packed integer weights with a manifest, and the verification of all three against the run."""

from jpq.export.export import (
    ExportedLayer,
    GroupPlan,
    OutputOrder,
    Pact,
    build_model,
    export_layers,
    export_net,
    export_run,
    plan_groups,
    precision_order,
    read_weights,
    verify_export,
)
from jpq.export.pack import BIT_ORDER, pack_bits, unpack_bits

__all__ = [
    "BIT_ORDER",
    "ExportedLayer",
    "GroupPlan",
    "OutputOrder",
    "Pact",
    "build_model",
    "export_layers",
    "export_net",
    "export_run",
    "pack_bits",
    "plan_groups",
    "precision_order",
    "read_weights",
    "unpack_bits",
    "verify_export",
]
