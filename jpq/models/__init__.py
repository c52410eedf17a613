"""Seed networks as fx-traceable nn.Modules (docs/architecture.md §2; docs/benchmarks.md §2.4, §3.4, §4.3).

`models` imports nothing else from jpq, so the search, export and pipeline layers can all build on it.
"""

from __future__ import annotations

from jpq.models.counting import count_macs, count_params, count_weights
from jpq.models.digits import DigitsCNN
from jpq.models.dscnn import DSCNN
from jpq.models.resnet8 import ResNet8
from jpq.models.resnet18 import ResNet18

__all__ = ["DSCNN", "DigitsCNN", "ResNet18", "ResNet8", "count_macs", "count_params", "count_weights"]
