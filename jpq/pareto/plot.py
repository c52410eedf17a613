"""Figures: accuracy-versus-cost Pareto fronts (paper Fig. 4-5) and per-layer precision assignments.

Figures are drawn on a bare :class:`matplotlib.figure.Figure` with the Agg canvas, never through pyplot:
no display is needed, no global backend is switched, and parallel callers do not share state. Files are
written atomically (docs/architecture.md §5) so a sweep's figures are never half-written.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from jpq.io import atomic_write_bytes
from jpq.pareto.front import pareto_mask
from jpq.pareto.records import fixed_label, group_keys, is_fixed

#: axis labels with units (docs/architecture.md §5; size_kb = bits/8/1000, docs/method.md §5.2)
AXIS_LABELS: dict[str, str] = {
    "size_kb": "Weight memory [kB]",
    "size_bits": "Weight memory [bit]",
    "bitops": "BitOps [bit-operations]",
    "mpic_cycles": "MPIC latency [cycles]",
    "mpic_energy_uj": "MPIC energy [µJ]",
    "ne16_cycles": "NE16 latency [cycles]",
    "warmup_val_acc": "Warm-up validation accuracy [%]",
    "warmup_test_acc": "Warm-up test accuracy [%]",
    "search_val_acc": "Search validation accuracy [%]",
    "final_val_acc": "Validation accuracy [%]",
    "final_test_acc": "Test accuracy [%]",
    "strength": "Regularizer strength λ",
    "wall_s_total": "Wall-clock time [s]",
}

#: metrics whose Pareto plots use a log x axis by default (sizes span orders of magnitude in Fig. 4)
LOG_X_METRICS: frozenset[str] = frozenset({"size_kb", "size_bits"})

#: fixed colours per weight bit-width in the architecture plot; 0 bits = pruned channels
BIT_COLORS: dict[int, str] = {
    0: "#d0d0d0", 2: "#e15759", 4: "#f28e2b", 8: "#4e79a7", 16: "#59a14f", 32: "#76b7b2",
}

_FIXED_MARKERS = ("s", "D", "^", "v", "P", "X", "*", "h", "p", "<", ">")


def axis_label(column: str) -> str:
    """The axis label (with unit) of a result column; the column name itself when unknown."""
    return AXIS_LABELS.get(column, column)


def _save(fig: Figure, out_path: str | Path, dpi: int = 150) -> Path:
    out_path = Path(out_path)
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format=out_path.suffix.lstrip(".") or "png", dpi=dpi, bbox_inches="tight")
    atomic_write_bytes(out_path, buf.getvalue())
    return out_path


def _fixed_sort_key(label: str) -> tuple[float, float, str]:
    """w8a8 before w4a8 before w2a8 (higher precision first, as in the paper's legends)."""
    nums = [int(t) for t in "".join(c if c.isdigit() else " " for c in label).split()]
    w = nums[0] if nums else 0
    a = nums[1] if len(nums) > 1 else 0
    return (-w, -a, label)


def _error_bars(ax: Any, sub: pd.DataFrame, *, x: str, y: str, color: str) -> None:
    """± one std over seeds (``<col>_std`` of points averaged by jpq.pareto.seeds), where there is one."""
    def std(col: str) -> np.ndarray | None:
        if f"{col}_std" not in sub.columns:
            return None
        v = sub[f"{col}_std"].to_numpy(dtype=float)
        return np.where(np.isfinite(v), v, 0.0) if np.isfinite(v).any() else None

    yerr, xerr = std(y), std(x)
    if yerr is None and xerr is None:
        return
    ax.errorbar(sub[x].to_numpy(dtype=float), sub[y].to_numpy(dtype=float), yerr=yerr, xerr=xerr,
                fmt="none", ecolor=color, elinewidth=0.9, capsize=2, alpha=0.7, zorder=2)


def fronts_figure(
    df: pd.DataFrame,
    *,
    x: str,
    y: str = "final_test_acc",
    group_by: str = "method",
    logx: bool | None = None,
    warmup_acc: float | None = None,
    title: str | None = None,
) -> Figure:
    """Build (not save) the Pareto figure of :func:`plot_fronts`; exposed so tests can inspect artists."""
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.add_subplot(1, 1, 1)
    if logx is None:
        logx = x in LOG_X_METRICS

    data = df[np.isfinite(df[x].to_numpy(dtype=float)) & np.isfinite(df[y].to_numpy(dtype=float))]
    if logx:
        data = data[data[x].to_numpy(dtype=float) > 0]  # a log axis cannot show zero cost
    keys = group_keys(data, group_by)
    fixed = is_fixed(data)

    colors = [f"C{i}" for i in range(10)]  # the default property cycle
    searched = sorted(set(keys[~fixed]))
    for i, group in enumerate(searched):
        sub = data[(keys == group) & ~fixed]
        gx = sub[x].to_numpy(dtype=float)
        gy = sub[y].to_numpy(dtype=float)
        color = colors[i % len(colors)]
        ax.scatter(gx, gy, s=18, color=color, alpha=0.3, linewidths=0, zorder=2)
        _error_bars(ax, sub, x=x, y=y, color=color)
        on = pareto_mask(gx, gy)
        order = np.lexsort((gy[on], gx[on]))
        ax.plot(gx[on][order], gy[on][order], marker="o", ms=5, lw=1.6, color=color, label=group, zorder=3)

    base = data[fixed]
    if len(base):
        no_bits = pd.Series([None] * len(base), index=base.index)
        labels = [fixed_label(w, a) for w, a in zip(base.get("w_bits", no_bits), base.get("a_bits", no_bits),
                                                    strict=True)]
        base = base.assign(_label=labels)
        for j, label in enumerate(sorted(set(labels), key=_fixed_sort_key)):
            pts = base[base["_label"] == label]
            px = pts[x].to_numpy(dtype=float)
            py = pts[y].to_numpy(dtype=float)
            _error_bars(ax, pts, x=x, y=y, color="black")
            ax.scatter(px, py, s=55, marker=_FIXED_MARKERS[j % len(_FIXED_MARKERS)], color="black",
                       facecolors="none" if j % 2 else "black", linewidths=1.2, label=label, zorder=4)
            k = int(np.argmax(py))
            ax.annotate(label, (px[k], py[k]), textcoords="offset points", xytext=(5, 4), fontsize=8)

    if warmup_acc is not None and math.isfinite(warmup_acc):
        ax.axhline(warmup_acc, ls="--", lw=1.0, color="0.4", label=f"FP warm-up ({warmup_acc:.1f} %)",
                   zorder=1)

    if logx:
        ax.set_xscale("log")
        # plain numbers at 1-2-5 steps: the default minor labels (3x10^0, 4x10^0, ...) overlap
        ax.xaxis.set_major_locator(LogLocator(base=10.0, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(axis_label(x) + (" (log scale)" if logx else ""))
    ax.set_ylabel(axis_label(y))
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    if len(data) == 0:
        ax.text(0.5, 0.5, "no points with both values", ha="center", va="center", transform=ax.transAxes)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right", title=None if group_by == "method" else group_by)
    return fig


def plot_fronts(
    df: pd.DataFrame,
    *,
    x: str,
    y: str = "final_test_acc",
    group_by: str = "method",
    out_path: str | Path,
    logx: bool | None = None,
    warmup_acc: float | None = None,
    title: str | None = None,
) -> Path:
    """Draw accuracy versus cost, one Pareto front per group, in the style of the paper's Fig. 4-5.

    Each group (a ``group_by`` value) gets its front as a line through its front points sorted by cost,
    plus all its points as faint markers. Fixed-precision baselines (``method == "fixed"``) are not a
    front: each is a distinct black marker labelled ``w8a8``, ``w4a8``, ... from its ``w_bits``/``a_bits``.
    The float warm-up accuracy is a dashed horizontal line. ``logx=None`` uses a log axis for sizes
    (the paper plots kB over two decades). Rows without a finite ``x`` or ``y`` are left out.

    Returns:
        The path written.
    """
    fig = fronts_figure(df, x=x, y=y, group_by=group_by, logx=logx, warmup_acc=warmup_acc, title=title)
    return _save(fig, out_path)


def plot_arch(arch: Mapping[str, Any], out_path: str | Path, *, title: str | None = None) -> Path:
    """Stacked bars per layer of output channels per weight bit-width (``arch.json``, see records).

    Shows where the joint search pruned (0 bits, drawn in grey) and where it kept high precision, like the
    per-layer assignment plots of the paper. Each bar is annotated with the layer's activation precision
    when known.

    Raises:
        ValueError: ``arch`` has no layers or a layer lacks ``w_bits_counts``.
    """
    layers = list(arch.get("layers") or [])
    if not layers:
        raise ValueError("arch has no layers to plot")
    bits: set[int] = set()
    for layer in layers:
        counts = layer.get("w_bits_counts")
        if not isinstance(counts, Mapping):
            raise ValueError(f"layer {layer.get('name', '?')!r} has no w_bits_counts")
        bits.update(int(b) for b in counts)
    bit_list = sorted(bits)

    n = len(layers)
    fig = Figure(figsize=(max(6.0, 0.45 * n + 2.0), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    pos = np.arange(n)
    bottom = np.zeros(n)
    cmap_extra = [f"C{i}" for i in range(10)]
    for k, b in enumerate(bit_list):
        vals = np.array([float(dict((int(kk), v) for kk, v in layer["w_bits_counts"].items()).get(b, 0))
                         for layer in layers])
        color = BIT_COLORS.get(b, cmap_extra[k % len(cmap_extra)])
        label = "0 bit (pruned)" if b == 0 else f"{b} bit"
        ax.bar(pos, vals, bottom=bottom, color=color, edgecolor="white", linewidth=0.5, label=label,
               hatch="//" if b == 0 else None)
        bottom += vals
    for i, layer in enumerate(layers):
        a = layer.get("a_bits")
        if a is not None:
            ax.text(pos[i], bottom[i], f"a{a}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(pos)
    ax.set_xticklabels([str(layer.get("name", i)) for i, layer in enumerate(layers)], rotation=60, ha="right",
                       fontsize=8)
    ax.set_xlabel("Layer")
    ax.set_ylabel("Output channels [count]")
    ax.set_ylim(0, max(1.0, float(bottom.max())) * 1.1)
    if title:
        ax.set_title(title)
    ax.legend(title="weight precision", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="y", alpha=0.3)
    return _save(fig, out_path)


__all__ = ["AXIS_LABELS", "axis_label", "fronts_figure", "plot_arch", "plot_fronts"]
