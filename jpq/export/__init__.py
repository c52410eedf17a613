"""Export of a searched network (docs/method.md §8): physically pruned, precision-sorted plain model, ONNX,
bit-packed integer weights with a manifest, and the verification of all three against the run."""

from jpq.export.export import export_net, export_run
from jpq.export.manifest import read_weights
from jpq.export.modules import OutputOrder, Pact
from jpq.export.pack import BIT_ORDER, pack_bits, unpack_bits
from jpq.export.plan import ExportedLayer, GroupPlan, export_layers, plan_groups, precision_order
from jpq.export.surgery import exported_model, pruned_graph
from jpq.export.verify import verify_export

__all__ = [
    "BIT_ORDER",
    "ExportedLayer",
    "GroupPlan",
    "OutputOrder",
    "Pact",
    "export_layers",
    "export_net",
    "export_run",
    "exported_model",
    "pack_bits",
    "plan_groups",
    "precision_order",
    "pruned_graph",
    "read_weights",
    "unpack_bits",
    "verify_export",
]
