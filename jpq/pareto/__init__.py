"""Result records, their collection over a sweep, Pareto fronts, plots and the summary report.

``records`` and ``front`` are light (numpy/pandas); ``plot`` and ``report`` import matplotlib and rich
and are loaded only when one of their names is first used, so writing a result stays cheap.
"""

from __future__ import annotations

from typing import Any

from jpq.pareto.front import front_mask_by_group, hypervolume, iso_accuracy_reduction, pareto_mask
from jpq.pareto.records import (
    COST_METRICS,
    RESULT_COLUMNS,
    ResultReadWarning,
    collect_results,
    fixed_label,
    read_result,
    write_result,
)

_LAZY = {
    "plot_fronts": "jpq.pareto.plot",
    "plot_arch": "jpq.pareto.plot",
    "fronts_figure": "jpq.pareto.plot",
    "pareto_report": "jpq.pareto.report",
    "front_summary": "jpq.pareto.report",
}


def __getattr__(name: str) -> Any:
    """Import plotting/report names on first use (PEP 562)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'jpq.pareto' has no attribute {name!r}")


__all__ = [
    "COST_METRICS",
    "RESULT_COLUMNS",
    "ResultReadWarning",
    "collect_results",
    "fixed_label",
    "front_mask_by_group",
    "front_summary",
    "fronts_figure",
    "hypervolume",
    "iso_accuracy_reduction",
    "pareto_mask",
    "pareto_report",
    "plot_arch",
    "plot_fronts",
    "read_result",
    "write_result",
]
