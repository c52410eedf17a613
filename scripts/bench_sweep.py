"""Wall time of a small digits sweep run sequentially and with the joblib launcher, side by side.

Both runs are the same 4-point strength sweep with ``make run``'s trainer (the default one; ``--trainer
smoke --max-batches 20`` gives a seconds-long check of the mechanics, whose wall time is mostly process
start-up), each in a fresh folder with its own warmup cache, so that both train the float seed once. The
sequential run's job uses every core; under ``hydra/launcher=joblib hydra.launcher.n_jobs=K`` each job
sets its threads to its share of the cores (``jpq.train.resources``). Usage::

    python scripts/bench_sweep.py [--n-jobs 2] [--trainer default] [--max-batches N] [--repeat 3] [--json]

Prints one row per run and the wall ratio parallel / sequential; with ``--json`` the last line is a JSON
object (seq_s, par_s, ratio per repetition, and their medians).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STRENGTHS = "0.5,1,2,4"


def sweep(folder: Path, trainer: str, max_batches: int | None, n_jobs: int | None, device: str) -> float:
    """Wall seconds of one ``jpq search -m`` sweep in ``folder``."""
    args = [
        sys.executable, "-m", "jpq.cli", "search", "-m", f"strength={STRENGTHS}", f"trainer={trainer}",
        "progress=false", f"device={device}", "cache_dir=cache", "hydra.sweep.dir=sweep",
    ]
    if max_batches is not None:
        args += [f"trainer.{phase}.max_batches={max_batches}" for phase in ("warmup", "search", "finetune")]
    if n_jobs is not None:
        args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    t = time.perf_counter()
    proc = subprocess.run(args, cwd=folder, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    done = len(list((folder / "sweep").rglob("result.json")))
    if done != len(STRENGTHS.split(",")):
        raise SystemExit(f"sweep in {folder} finished {done} jobs, expected {len(STRENGTHS.split(','))}")
    lines = [ln for ln in proc.stderr.splitlines() if "threads:" in ln]
    print(f"  {'joblib n_jobs=' + str(n_jobs) if n_jobs else 'sequential':<16} {wall:7.1f} s   "
          f"{lines[0].split('threads:', 1)[1].split('  ')[0].strip() if lines else ''}", flush=True)
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--trainer", default="default", help="trainer config of the sweep (default: make run's)")
    p.add_argument("--max-batches", type=int, default=None, help="limit the batches per epoch of every phase")
    p.add_argument("--repeat", type=int, default=3, help="sequential/parallel pairs (the median counts)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    rows = []
    print(f"{len(STRENGTHS.split(','))}-point digits sweep, {os.cpu_count()} cores visible")
    for r in range(a.repeat):
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            seq = sweep(Path(d1), a.trainer, a.max_batches, None, a.device)
            par = sweep(Path(d2), a.trainer, a.max_batches, a.n_jobs, a.device)
        rows.append({"seq_s": round(seq, 2), "par_s": round(par, 2), "ratio": round(par / seq, 3)})
        print(f"  repetition {r + 1}: parallel / sequential = {par / seq:.2f}", flush=True)
    med = {k: statistics.median(row[k] for row in rows) for k in ("seq_s", "par_s", "ratio")}
    print(f"median wall: sequential {med['seq_s']:.1f} s, joblib n_jobs={a.n_jobs} {med['par_s']:.1f} s, "
          f"ratio {med['ratio']:.2f}")
    if a.json:
        print(json.dumps({"n_jobs": a.n_jobs, "rows": rows, "median": med}))


if __name__ == "__main__":
    main()
