"""A front without holes: add budget-mode points where a sweep's front has its widest cost gaps.

``jpq front DIR [options] [-- search overrides]`` reads the finished runs under ``DIR`` (a first grid,
e.g. a λ sweep), takes one method's Pareto front by one cost metric, and measures the gaps between
neighbouring front points on a log scale (the ratio of their costs). While some gap is wider than
``--max-ratio`` and the point budget lasts, it launches one Hydra multirun into ``DIR`` with a budget
target at the geometric middle of each of the widest gaps (``target.size_kb=...``, jpq/search/budget.py):
a target lands a point inside the gap, which a strength can only hope for. Every new point is a job,
so ``hydra/launcher=...`` overrides parallelise them; ``seed=1,2,3`` repeats each one.

A gap that already holds a budget point of the method (this or an earlier fill tried it, and the
point was dominated or failed) is not tried again, so the loop ends; the report lists the gaps left.
"""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from jpq.errors import ConfigError, RunDirError
from jpq.pareto.front import pareto_mask
from jpq.pareto.records import collect_results

#: the cost metrics a budget target exists for (jpq/search/budget.py)
FILL_METRICS = ("size_kb", "ne16_cycles", "mpic_cycles", "bitops")


@dataclass(frozen=True)
class Gap:
    """Two neighbouring front points ``lo < hi`` (cost); ``target`` is their geometric middle."""

    lo: float
    hi: float

    @property
    def ratio(self) -> float:
        return self.hi / self.lo

    @property
    def target(self) -> float:
        return float(f"{math.sqrt(self.lo * self.hi):.4g}")  # 4 digits: readable run directory names


def front_costs(df: pd.DataFrame, *, metric: str, method: str, y: str = "final_test_acc") -> np.ndarray:
    """The sorted costs of ``method``'s front (cost ``metric`` minimised, ``y`` maximised)."""
    sub = df[df["method"].astype(str) == method] if "method" in df.columns else df.iloc[:0]
    x = sub[metric].to_numpy(dtype=float) if metric in sub.columns else np.array([])
    acc = sub[y].to_numpy(dtype=float) if y in sub.columns else np.array([])
    on = pareto_mask(x, acc) & (x > 0)
    return np.sort(x[on])


def widest_gaps(front: Sequence[float], *, max_ratio: float, tried: Sequence[float] = ()) -> list[Gap]:
    """The gaps between neighbouring front costs wider than ``max_ratio``, widest first, leaving out those
    that already hold a tried cost (strictly inside)."""
    xs = sorted(float(v) for v in front)
    gaps = [Gap(a, b) for a, b in zip(xs, xs[1:], strict=False) if a > 0 and b / a > max_ratio]
    gaps = [g for g in gaps if not any(g.lo < t < g.hi for t in tried)]
    return sorted(gaps, key=lambda g: (-g.ratio, g.lo))


def search_command(root: Path, metric: str, method: str, targets: Sequence[float],
                   overrides: Sequence[str]) -> list[str]:
    """The ``jpq search -m`` command line of one round: one job per target (times any swept override)."""
    over = list(overrides)
    if not any(o.split("=", 1)[0].lstrip("+~") in ("method", "variant") for o in over):
        over.append(f"method={method}")
    values = ",".join(f"{t:g}" for t in targets)
    return [sys.executable, "-m", "jpq.cli", "search", "-m", *over, f"target.{metric}={values}",
            f"hydra.sweep.dir={root}"]


def _run(cmd: list[str]) -> int:
    return subprocess.call(cmd)


@dataclass
class FillResult:
    rounds: int
    added: list[float]
    remaining: list[Gap]


def fill_front(
    root: str | Path,
    overrides: Sequence[str] = (),
    *,
    metric: str = "size_kb",
    method: str = "joint",
    y: str = "final_test_acc",
    max_ratio: float = 2.0,
    points: int = 8,
    per_round: int = 4,
    run: Callable[[list[str]], int] = _run,
    log: Callable[[str], None] = print,
) -> FillResult:
    """Add budget points into the widest front gaps of ``root`` until none is wider than ``max_ratio``
    or ``points`` new points were launched; ``run`` executes one round's command (a subprocess)."""
    root = Path(root)
    if metric not in FILL_METRICS:
        raise ConfigError(f"--metric {metric}: choose one of {', '.join(FILL_METRICS)}")
    if not max_ratio > 1:
        raise ConfigError(f"--max-ratio must be > 1, got {max_ratio}")
    if points < 1 or per_round < 1:
        raise ConfigError("--points and --per-round must be >= 1")
    if not root.is_dir():
        raise RunDirError(f"results folder {root} does not exist")
    added: list[float] = []
    rounds = 0
    while True:
        df = collect_results(root)
        if df.empty:
            raise RunDirError(f"no readable result.json under {root}: run the first grid there")
        front = front_costs(df, metric=metric, method=method, y=y)
        if front.size == 0:
            raise RunDirError(f"no run of method {method} with a {metric} under {root}")
        sub = df[df["method"].astype(str) == method]
        budget = sub["target"].notna() if "target" in sub.columns else pd.Series(False, index=sub.index)
        tried = [*sub.loc[budget, metric].to_numpy(dtype=float), *added]  # earlier fill points count
        gaps = widest_gaps(front, max_ratio=max_ratio, tried=tried)
        if not gaps or len(added) >= points:  # report every gap still open, tried or not
            return FillResult(rounds, added, widest_gaps(front, max_ratio=max_ratio))
        todo = [g.target for g in gaps[: min(per_round, points - len(added))]]
        log(f"round {rounds + 1}: {len(gaps)} gap(s) wider than {max_ratio:g}x; targets "
            + ", ".join(f"{metric}={t:g}" for t in todo))
        rc = run(search_command(root, metric, method, todo, overrides))
        if rc != 0:
            raise RunDirError(f"the search round exited with status {rc}")
        added += todo
        rounds += 1
