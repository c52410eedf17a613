"""``jpq plot-pareto``: gather a sweep, mark the fronts, draw them, print the paper's headline numbers.

The paper's results are accuracy-versus-cost Pareto fronts (Fig. 4-5) summarised as "size reduction at
iso-accuracy" against fixed-precision baselines (docs/method.md §9). :func:`pareto_report` produces all of
that from a folder of finished runs:

* ``root/pareto.csv``: every run (the :data:`~jpq.pareto.records.RESULT_COLUMNS`, extra keys, then
  ``on_front``, computed per group for the primary cost metric);
* ``root/pareto_<metric>.png`` per cost metric present and ``root/pareto.png`` (the size plot), or only
  ``root/pareto.png`` when one metric is asked for;
* ``root/pareto_summary.csv``: per group, points, front size, normalised hypervolume and the reductions at
  iso-accuracy (the same numbers as the printed summary table);
* rich tables on the console: each group's front, then the per-group summary.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from jpq.errors import ConfigError, RunDirError
from jpq.io import atomic_write_bytes, atomic_write_text
from jpq.pareto.front import front_mask_by_group, hypervolume, iso_accuracy_reduction, pareto_mask
from jpq.pareto.plot import plot_fronts
from jpq.pareto.records import (
    COST_METRICS,
    FIXED_METHOD,
    collect_results,
    fixed_label,
    group_keys,
    is_fixed,
)
from jpq.pareto.seeds import aggregate_seeds

PARETO_CSV = "pareto.csv"
PARETO_PNG = "pareto.png"
SUMMARY_CSV = "pareto_summary.csv"
#: the sequential baseline (docs/method.md §7) the searched methods are compared against, front to front
SEQUENTIAL_METHOD = "pit_mixprec"

#: the reference point of the normalised hypervolume: cost = the sweep's largest cost, accuracy = 0 %
HV_REF_X = 1.0
HV_REF_Y = 0.0


def _numeric_columns(df: pd.DataFrame) -> list[str]:
    types = pd.api.types
    return [c for c in df.columns if types.is_numeric_dtype(df[c]) and not types.is_bool_dtype(df[c])]


def _check_column(df: pd.DataFrame, name: str, what: str, valid: list[str]) -> None:
    if name not in valid:
        raise ConfigError(f"unknown {what} column {name!r}; valid: {', '.join(valid)}")
    if not df[name].notna().any():
        raise ConfigError(f"no result under this root has a value for {what} column {name!r}")


def _finite(df: pd.DataFrame, *cols: str) -> pd.Series:
    ok = pd.Series(True, index=df.index)
    for c in cols:
        ok &= np.isfinite(df[c].to_numpy(dtype=float))
    return ok


def _fixed_baselines(df: pd.DataFrame, *, x: str, y: str) -> dict[str, tuple[float, float]]:
    """``label -> (x, y)`` of each fixed-precision baseline, highest precision first.

    Several runs of one baseline (e.g. seeds) are reduced to the most accurate one (cheapest on ties),
    consistent with "the best fixed-precision baseline".
    """
    base = df[is_fixed(df) & _finite(df, x, y)]
    out: dict[str, tuple[float, float]] = {}
    if base.empty:
        return out
    labels = [fixed_label(w, a) for w, a in zip(base["w_bits"], base["a_bits"], strict=True)]
    base = base.assign(_label=labels).sort_values([y, x], ascending=[False, True], kind="stable")
    for label, row in base.groupby("_label", sort=False):
        out[str(label)] = (float(row[x].iloc[0]), float(row[y].iloc[0]))

    def order(label: str) -> tuple[int, ...]:
        nums = [int(t) for t in "".join(c if c.isdigit() else " " for c in label).split()]
        return tuple(-n for n in nums)

    return {k: out[k] for k in sorted(out, key=order)}


def front_summary(
    df: pd.DataFrame, *, x: str, y: str = "final_test_acc", group_by: str = "method"
) -> pd.DataFrame:
    """Per-group summary: points, front size, normalised hypervolume, reductions at iso-accuracy.

    * ``hypervolume``: cost divided by the largest cost in ``df`` (so groups are comparable and the value
      lies in [0, 100]), accuracy in percent, reference point (1.0, 0 %).
    * ``reduction_vs_best_fixed_pct``: cost reduction at iso-accuracy (``iso_accuracy_reduction``)
      against the most accurate fixed-precision run, named in ``best_fixed``; one
      ``reduction_vs_<label>_pct`` column per baseline (``w8a8``, ``w4a8``, ...). NaN where the group never
      reaches the baseline accuracy and for the baselines' own group.
    * ``reduction_vs_pit_mixprec_pct`` (grouped by method, when the sequential PIT -> mixprec baseline
      ran): the largest cost reduction at iso-accuracy against any point of its front, the paper's "up
      to" comparison with the sequential method.
    """
    keys = group_keys(df, group_by)
    ok = _finite(df, x, y)
    x_all = df.loc[ok, x].to_numpy(dtype=float)
    x_max = float(x_all.max()) if x_all.size else math.nan
    baselines = _fixed_baselines(df, x=x, y=y)
    best_label = max(baselines, key=lambda k: (baselines[k][1], -baselines[k][0])) if baselines else None

    sequential = _sequential_front(df, keys, x=x, y=y) if group_by == "method" else None
    groups = sorted(set(keys), key=lambda g: (g == FIXED_METHOD, g))
    rows: list[dict[str, Any]] = []
    for g in groups:
        sel = (keys == g) & ok
        gx = df.loc[sel, x].to_numpy(dtype=float)
        gy = df.loc[sel, y].to_numpy(dtype=float)
        row: dict[str, Any] = {
            "group": g,
            "n_points": int(sel.sum()),
            "n_front": int(df.loc[sel, "on_front"].sum()) if "on_front" in df.columns else np.nan,
            "hypervolume": (
                hypervolume(gx / x_max, gy, ref_x=HV_REF_X, ref_y=HV_REF_Y) if x_max > 0 else math.nan
            ),
            "best_fixed": best_label,
            "n_seeds": int(df.loc[sel, "n_seeds"].min()) if "n_seeds" in df.columns and sel.any() else 1,
            # the training each point got (a fair comparison gives every method the same epochs)
            "epochs_total": _mean(df.loc[sel], "epochs_total"),
            "wall_s_total": _mean(df.loc[sel], "wall_s_total"),
        }
        searched = g != FIXED_METHOD
        red: float | None = None
        if searched and best_label is not None:
            bx, by = baselines[best_label]
            red = iso_accuracy_reduction(gx, gy, base_x=bx, base_y=by)
        row["reduction_vs_best_fixed_pct"] = math.nan if red is None else red
        for label, (bx, by) in baselines.items():
            r = iso_accuracy_reduction(gx, gy, base_x=bx, base_y=by) if searched else None
            row[f"reduction_vs_{label}_pct"] = math.nan if r is None else r
        if sequential is not None:
            r = None
            if searched and g != SEQUENTIAL_METHOD:
                found = [v for bx, by in sequential
                         if (v := iso_accuracy_reduction(gx, gy, base_x=bx, base_y=by)) is not None]
                r = max(found) if found else None
            row[f"reduction_vs_{SEQUENTIAL_METHOD}_pct"] = math.nan if r is None else r
        rows.append(row)
    return pd.DataFrame(rows)


def _mean(df: pd.DataFrame, col: str) -> float:
    return float(df[col].mean()) if col in df.columns and df[col].notna().any() else math.nan


def _sequential_front(
    df: pd.DataFrame, keys: pd.Series, *, x: str, y: str
) -> list[tuple[float, float]] | None:
    """``(cost, accuracy)`` of the sequential PIT -> mixprec baseline's front, or None without one."""
    sel = (keys == SEQUENTIAL_METHOD) & _finite(df, x, y)
    if not sel.any():
        return None
    sx, sy = df.loc[sel, x].to_numpy(dtype=float), df.loc[sel, y].to_numpy(dtype=float)
    on = pareto_mask(sx, sy)
    return [(float(a), float(b)) for a, b in zip(sx[on], sy[on], strict=True) if a > 0]


def _fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "acc":
        return f"{value:.2f}"
    if kind == "kb":
        return f"{value:.2f}"
    if kind == "pct":
        return f"{value:+.2f} %"
    if kind == "sci":
        return f"{value:.3e}"
    if kind == "strength":
        return f"{value:.1e}"
    return str(value)


def _metric_kind(col: str) -> str:
    if col.endswith("_acc"):
        return "acc"
    if col == "size_kb":
        return "kb"
    return "sci"


def _with_std(row: pd.Series, col: str) -> str:
    """``mean ± std`` when the point averages several seeds, else the value."""
    text = _fmt(row[col], _metric_kind(col))
    std = row.get(f"{col}_std")
    if std is not None and isinstance(std, float) and math.isfinite(std):
        text += f" ± {_fmt(std, _metric_kind(col))} (n={int(row['n_seeds'])})"
    return text


def _short(run_dir: Any, root: Path) -> str:
    try:
        return os.path.relpath(str(run_dir), str(root))
    except ValueError:
        return str(run_dir)


def _print_tables(console: Console, df: pd.DataFrame, summary: pd.DataFrame, *, root: Path, x: str, y: str,
                  group_by: str) -> None:
    keys = group_keys(df, group_by)
    costs = [c for c in ("size_kb", "mpic_cycles", "ne16_cycles") if c in df.columns and df[c].notna().any()]
    cols = [y, *([x] if x not in costs else []), *costs]
    for g in summary["group"]:
        fixed = g == FIXED_METHOD
        rows = df[(keys == g) & (df["on_front"] | fixed)].sort_values(x, kind="stable")
        title = "fixed-precision baselines" if fixed else f"Pareto front: {group_by} = {g} (by {x})"
        table = Table(title=title, title_justify="left")
        if fixed:
            table.add_column("baseline")
        for c in cols:
            table.add_column(c, justify="right")
        table.add_column("strength", justify="right")
        table.add_column("run_dir")
        for _, r in rows.iterrows():
            cells = [fixed_label(r.get("w_bits"), r.get("a_bits"))] if fixed else []
            cells += [_with_std(r, c) for c in cols]
            cells += [_fmt(r.get("strength"), "strength"), _short(r.get("run_dir"), root)]
            table.add_row(*cells)
        console.print(table)

    # the best fixed baseline's column is marked instead of repeated (pareto_summary.csv has both)
    red_cols = [c for c in summary.columns
                if c.startswith("reduction_vs_") and c != "reduction_vs_best_fixed_pct"]
    best = summary["best_fixed"].dropna()
    best_name = str(best.iloc[0]) if len(best) else None
    table = Table(title=f"Summary by {group_by}: {y} vs {x}; {x} reduction at iso-accuracy",
                  title_justify="left")
    table.add_column(group_by, no_wrap=True)
    table.add_column("points", justify="right")
    table.add_column("on front", justify="right")
    table.add_column("HV (norm.)", justify="right")
    table.add_column("seeds", justify="right")
    table.add_column("epochs", justify="right")
    table.add_column("wall s", justify="right")
    for c in red_cols:
        name = c.removeprefix("reduction_vs_").removesuffix("_pct")
        note = " (up to)" if name == SEQUENTIAL_METHOD else " (best fixed)" if name == best_name else ""
        table.add_column(f"vs {name}{note}", justify="right", no_wrap=True)
    for _, r in summary.iterrows():
        table.add_row(
            str(r["group"]),
            str(r["n_points"]),
            str(r["n_front"]),
            f"{r['hypervolume']:.2f}" if math.isfinite(r["hypervolume"]) else "-",
            str(r["n_seeds"]),
            f"{r['epochs_total']:.0f}" if math.isfinite(r["epochs_total"]) else "-",
            f"{r['wall_s_total']:.0f}" if math.isfinite(r["wall_s_total"]) else "-",
            *[_fmt(r[c], "pct") for c in red_cols],
        )
    console.print(table)
    console.print("reduction = 100·(1 − cheapest cost reaching the baseline accuracy / baseline cost); "
                  "'-' = baseline accuracy not reached; on the means over 'seeds' seeds (the fewest of a "
                  "group's points); epochs / wall s: mean configured training epochs and wall time per "
                  "point", style="dim")


def _title(df: pd.DataFrame) -> str | None:
    parts = []
    for c in ("dataset", "model"):
        vals = sorted({str(v) for v in df[c].dropna()}) if c in df.columns else []
        if vals:
            parts.append(",".join(vals))
    return " / ".join(parts) or None


def _collect(root: Path, console: Console) -> pd.DataFrame:
    """Every run's record under ``root``; the collection's warnings go to the console and stay warnings."""
    if not root.is_dir():
        raise RunDirError(f"results folder {root} does not exist" if not root.exists()
                          else f"{root} is not a folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        df = collect_results(root)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}")
        warnings.warn(str(w.message), w.category, stacklevel=3)
    if df.empty:
        raise RunDirError(f"no readable result.json under {root}")
    return df


def _metrics(df: pd.DataFrame, root: Path, *, x: str | None, y: str, group_by: str) -> tuple[list[str], str]:
    """The cost metrics to draw and the primary one (``on_front``, ``pareto.png``, the summary), after the
    checks of ``x``, ``y`` and ``group_by`` against the collected columns."""
    numeric = _numeric_columns(df)
    _check_column(df, y, "y", numeric)
    if group_by not in df.columns:
        raise ConfigError(f"unknown group_by column {group_by!r}; valid: {', '.join(map(str, df.columns))}")
    if x is not None:
        _check_column(df, x, "x", numeric)
        return [x], x
    metrics = [m for m in COST_METRICS if m in df.columns and df[m].notna().any()]
    if not metrics:
        raise RunDirError(f"no result under {root} has a cost metric ({', '.join(COST_METRICS)})")
    return metrics, "size_kb" if "size_kb" in metrics else metrics[0]


def pareto_report(
    root: str | Path,
    *,
    x: str | None = None,
    y: str = "final_test_acc",
    group_by: str = "method",
    console: Console | None = None,
) -> pd.DataFrame:
    """Collect every run under ``root``, write ``pareto.csv`` and the figures, print the fronts and summary.

    Args:
        root: the sweep folder (run directories at any depth; hidden folders such as ``.cache`` skipped).
        x: the cost metric; ``None`` draws one figure per metric of ``COST_METRICS`` that has values
            (``pareto_<metric>.png``) and uses ``size_kb`` (else the first present metric) as the primary
            metric for ``on_front``, ``pareto.png`` and the summary. Given, only that metric is drawn, as
            ``pareto.png``.
        y: the accuracy column (percent); the warm-up line is the mean ``warmup_test_acc``
            (``warmup_val_acc`` when ``y`` is a validation accuracy).
        group_by: the column whose values get one front each; fixed-precision baselines are always
            their own group (markers, not a front).
        console: where the tables go (a default rich console when ``None``).

    Returns:
        The collected frame with the added ``on_front`` column, as written to ``pareto.csv``.

    Raises:
        RunDirError: ``root`` does not exist, holds no readable ``result.json`` or no cost metric.
        ConfigError: ``x``, ``y`` or ``group_by`` is not a (numeric, where needed) column; the error lists
            the valid names.
    """
    # a log file or pipe gets rich's 80 columns, too narrow for the summary: use a wide page there
    console = console if console is not None else Console(width=None if sys.stdout.isatty() else 150)
    root = Path(root)
    df = _collect(root, console)
    metrics, primary = _metrics(df, root, x=x, y=y, group_by=group_by)
    df = aggregate_seeds(df, stats=[y, *metrics])  # points that differ only in seed: their means
    df = df.assign(on_front=front_mask_by_group(df, x=primary, y=y, group_by=group_by))
    keys = group_keys(df, group_by)
    df = (df.assign(_group=keys).sort_values(["_group", primary], kind="stable", na_position="last")
          .drop(columns="_group").reset_index(drop=True))
    atomic_write_text(root / PARETO_CSV, df.to_csv(index=False))

    warm_col = "warmup_val_acc" if "val" in y else "warmup_test_acc"
    warm = df[warm_col].mean() if warm_col in df.columns else math.nan
    warmup_acc = float(warm) if pd.notna(warm) else None
    title = _title(df)
    written = [root / PARETO_CSV]
    for m in metrics:
        out = root / (f"pareto_{m}.png" if x is None else PARETO_PNG)
        written.append(plot_fronts(df, x=m, y=y, group_by=group_by, out_path=out, warmup_acc=warmup_acc,
                                   title=title))
        if x is None and m == primary:
            atomic_write_bytes(root / PARETO_PNG, out.read_bytes())
            written.append(root / PARETO_PNG)

    summary = front_summary(df, x=primary, y=y, group_by=group_by)
    atomic_write_text(root / SUMMARY_CSV, summary.to_csv(index=False))
    written.append(root / SUMMARY_CSV)
    _print_tables(console, df, summary, root=root, x=primary, y=y, group_by=group_by)
    console.print(f"wrote {', '.join(p.name for p in written)} in {root}")
    return df
