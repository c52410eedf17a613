"""How long one point of a CPU recipe takes: run it for one epoch per phase, extrapolate its schedule.

The CPU recipes (``conf/experiment/cpu_cifar10.yaml``, ``cpu_gsc.yaml``) promise a whole run (warmup +
search + fine-tune + evaluations) in <= 60 min on 2 CPU cores. This script checks that honestly,
without the real data:

1. writes synthetic data in the official format (``jpq.data.synthetic``) into ``--work``: CIFAR-10 at
   the real size (50,000 + 10,000 images), Speech Commands at ``--scale`` of it (the real set is
   ~3.5 GB of WAV); for GSC the one-off MFCC extraction is timed here and scaled to the real 111,508
   clips and windows;
2. runs ``jpq search experiment=<recipe>`` as a user does, with every phase cut to one epoch and a fresh
   warmup cache;
3. reads ``result.json`` (wall time of each phase, total) and ``history.csv`` (wall time of the epoch),
   splits each phase into its epoch (train + validation) and its tail (the final test evaluation), and
   for GSC scales train / validation / test linearly to the real split sizes 85,511 / 10,102 / 4,890
   (the validation share is estimated at the test evaluation's per-sample rate);
4. prints the extrapolated total for the recipe's epoch counts (an upper bound: early stopping can only
   shorten it) and the load average, since other processes on the machine slow every number down.

Accuracy on synthetic data means nothing and is not reported. Usage::

    python scripts/time_recipe.py cpu_cifar10 [--work DIR] [-- extra overrides]
    python scripts/time_recipe.py cpu_gsc --scale 0.1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

PHASES = ("warmup", "search", "finetune")
#: the real split sizes the GSC numbers are scaled to (docs/benchmarks.md §3.1); CIFAR-10 is generated at
#: its real size, so its numbers need no scaling
GSC_REAL = {"train": 85_511, "val": 10_102, "test": 4_890}
GSC_REAL_SOURCE = 105_829 + 4_890 + 668 + 121  # clips + test clips + silence windows featurised once


def _ensure_data(dataset: str, data_dir: Path, scale: float) -> float:
    """Write the synthetic data if absent; returns the fraction of the real size it has."""
    from jpq.data import synthetic

    if dataset == "cifar10":
        if not (data_dir / synthetic.CIFAR_FOLDER).exists():
            print(f"writing synthetic CIFAR-10 (50,000 + 10,000 images) into {data_dir} ...", flush=True)
            synthetic.write_cifar10(data_dir)
        return 1.0
    if dataset == "gsc":
        if not (data_dir / synthetic.GSC_MAIN_FOLDER).exists():
            print(f"writing synthetic Speech Commands at {scale:g} of the real size into {data_dir} ...",
                  flush=True)
            synthetic.write_gsc(
                data_dir,
                clips_per_word=max(3, round(3_024 * scale)),
                test_per_label=max(1, round(408 * scale)),
                noise_fraction=scale,
            )
        return scale
    raise SystemExit(f"time_recipe: dataset {dataset} is not a CPU recipe (cifar10 or gsc only)")


def _load(cfg: Any) -> dict[str, int]:
    """Generated split sizes after the recipe's options (limit_train, val_size)."""
    from jpq.build import load_data

    data = load_data(cfg)
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    sizes["extra_test"] = sum(len(s) for s in data.extra_test.values())
    return sizes


def _gsc_featurised(data_dir: Path) -> int:
    """Clips and silence windows the GSC loader featurises: every WAV clip of both sets + the windows."""
    from jpq.data import synthetic
    from jpq.data.gsc import read_wav, silence_windows

    count = 0
    for folder in (synthetic.GSC_MAIN_FOLDER, synthetic.GSC_TEST_FOLDER):
        for path in (data_dir / folder).rglob("*.wav"):
            if path.parent.name == synthetic.GSC_NOISE_DIR:
                count += len(silence_windows(read_wav(path.read_bytes(), path.name)))
            else:
                count += 1
    return count


def _time_gsc_features(data_dir: Path) -> float:
    """Wall time of the one-off MFCC extraction, measured on a fresh cache (a linked copy of the data)."""
    from jpq.data import synthetic
    from jpq.data.gsc import load_gsc

    with tempfile.TemporaryDirectory(prefix="jpq-gsc-") as tmp:
        top = synthetic.GSC_MAIN_FOLDER.split("/")[0]
        (Path(tmp) / top).symlink_to(data_dir / top, target_is_directory=True)
        t0 = time.perf_counter()
        load_gsc(tmp, progress=False)
        return time.perf_counter() - t0


def _real_sizes(cfg: Any, generated: dict[str, int]) -> dict[str, int]:
    """Split sizes of the real dataset under the recipe's options."""
    if cfg.dataset.name != "gsc":
        return dict(generated)  # generated at the real size
    real = dict(GSC_REAL)
    if cfg.dataset.limit_train is not None:
        real["train"] = min(real["train"], int(cfg.dataset.limit_train))
    real["extra_test"] = 0
    return real


def extrapolate(
    result: dict[str, Any],
    history: pd.DataFrame,
    epochs: dict[str, int],
    generated: dict[str, int],
    real: dict[str, int],
    startup_s: float = 0.0,
) -> dict[str, Any]:
    """Per-phase and total seconds of the full recipe from a one-epoch-per-phase run.

    Each phase's wall time = its one epoch (train + validation, ``history.csv``) + a tail (final test
    evaluation, checkpoints). The tail gives the evaluation rate per sample, which estimates the
    validation share of the epoch; train, validation and test then scale with the real split sizes.
    ``startup_s``: the process's wall time outside ``wall_s_total`` (imports, Hydra), added as is.
    """
    f_train = real["train"] / generated["train"]
    f_val = real["val"] / generated["val"]
    n_eval = generated["test"] + generated.get("extra_test", 0)
    f_test = (real["test"] + real.get("extra_test", 0)) / n_eval
    rows: dict[str, Any] = {}
    phases_s = 0.0
    for phase in PHASES:
        wall = float(result.get(f"wall_s_{phase}", 0.0))
        ran = history[history["phase"] == phase]
        if ran.empty or epochs[phase] == 0:
            rows[phase] = {"epochs": epochs[phase], "epoch_s": 0.0, "tail_s": 0.0, "total_s": 0.0}
            continue
        epoch_s = float(ran["wall_s"].iloc[0])
        tail_s = max(wall - epoch_s, 0.0)
        val_s = min(epoch_s, tail_s / n_eval * generated["val"])
        real_epoch = (epoch_s - val_s) * f_train + val_s * f_val
        real_tail = tail_s * f_test
        total = epochs[phase] * real_epoch + real_tail
        rows[phase] = {
            "epochs": epochs[phase],
            "measured_epoch_s": epoch_s,
            "epoch_s": real_epoch,
            "tail_s": real_tail,
            "total_s": total,
        }
        phases_s += total
    phase_walls = sum(float(result.get(f"wall_s_{p}", 0.0)) for p in PHASES)
    other_s = max(float(result["wall_s_total"]) - phase_walls, 0.0)
    other_s *= max(f_train, 1.0)  # data loading, conversion, reports: scaled conservatively
    other_s += startup_s  # interpreter, imports, Hydra composition
    rows["other_s"] = other_s
    rows["total_s"] = phases_s + other_s
    rows["sweep_point_s"] = rows["search"]["total_s"] + rows["finetune"]["total_s"] + other_s
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("experiment", help="cpu_cifar10 or cpu_gsc (any experiment on cifar10/gsc works)")
    p.add_argument("--work", type=Path, default=None, help="folder for data and runs (default: a temp dir)")
    p.add_argument("--scale", type=float, default=0.1, help="GSC: fraction of the real size to generate")
    p.add_argument("overrides", nargs="*", help="extra Hydra overrides for the run")
    a = p.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="jpq-time-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = (work / "data").resolve()
    load_before = os.getloadavg()

    from jpq.cli import compose_config

    cfg = compose_config([f"experiment={a.experiment}", f"data_dir={data_dir}", "progress=false",
                          *a.overrides])
    epochs = {ph: int(cfg.trainer[ph].epochs) for ph in PHASES}
    scale = _ensure_data(cfg.dataset.name, data_dir, a.scale)
    generated = _load(cfg)
    features_s = 0.0
    if cfg.dataset.name == "gsc":
        features_s = _time_gsc_features(data_dir)
        print(f"one-off MFCC extraction: {features_s:.1f} s for {scale:g} of the real size", flush=True)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, cache_dir = work / f"run-{stamp}", work / f"cache-{stamp}"
    cmd = [
        sys.executable, "-m", "jpq.cli", "search", f"experiment={a.experiment}", f"data_dir={data_dir}",
        f"hydra.run.dir={run_dir}", f"cache_dir={cache_dir}", "progress=false",
        *(f"trainer.{ph}.epochs={min(1, n)}" for ph, n in epochs.items()), *a.overrides,
    ]
    print("running:", " ".join(cmd[2:]), flush=True)
    t1 = time.perf_counter()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    run_wall_s = time.perf_counter() - t1
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run_cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n", file=sys.stderr)
        return proc.returncode
    result = json.loads((run_dir / "result.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    real = _real_sizes(cfg, generated)
    startup_s = max(run_wall_s - float(result["wall_s_total"]), 0.0)
    rows = extrapolate(result, history, epochs, generated, real, startup_s)
    one_off_s = 0.0
    if cfg.dataset.name == "gsc":
        one_off_s = features_s * GSC_REAL_SOURCE / _gsc_featurised(data_dir)
    load_after = os.getloadavg()

    print()
    print(f"recipe {a.experiment}: {cfg.dataset.name} / {cfg.model._target_.rsplit('.', 1)[-1]}, "
          f"torch threads {_threads()}, cpu count {os.cpu_count()}")
    print(f"generated splits {generated}; real splits used for the extrapolation {real}")
    print(f"measured one-epoch run: {run_wall_s:.1f} s wall, {run_cpu_s:.1f} CPU-s (process); result.json "
          f"total {result['wall_s_total']:.1f} s. CPU-s / wall = {run_cpu_s / run_wall_s:.2f} of the "
          f"{_threads()} threads: well below means other processes took the cores")
    print(f"{'phase':<9} {'epochs':>6} {'1 epoch (meas.)':>16} {'1 epoch (real)':>15} {'test eval':>10} "
          f"{'phase':>9}")
    for ph in PHASES:
        r = rows[ph]
        print(f"{ph:<9} {r['epochs']:>6} {r.get('measured_epoch_s', 0.0):>14.1f} s {r['epoch_s']:>13.1f} s "
              f"{r['tail_s']:>8.1f} s {r['total_s'] / 60:>7.1f} min")
    print(f"{'other':<9} {'':>6} {'':>16} {'':>15} {'':>10} {rows['other_s'] / 60:>7.1f} min  "
          "(start-up, data loading, conversion, reports)")
    total_min = rows["total_s"] / 60
    print(f"extrapolated whole run: {total_min:.1f} min (upper bound: all epochs, no early stop)")
    if one_off_s:
        print(f"plus the first run's one-off MFCC extraction of the real set: ~{one_off_s / 60:.1f} min")
    print(f"each further strength of a sweep (warmup cached): {rows['sweep_point_s'] / 60:.1f} min")
    print(f"load average (1/5/15 min) before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}")
    out = {
        "experiment": a.experiment, "generated": generated, "real": real, "epochs": epochs, "rows": rows,
        "one_off_features_s": one_off_s, "load_before": load_before, "load_after": load_after,
        "run_wall_s": run_wall_s, "run_cpu_s": run_cpu_s,
        "result": {k: v for k, v in result.items() if k.startswith("wall_s")},
    }
    (work / f"timing-{a.experiment}-{stamp}.json").write_text(json.dumps(out, indent=1))
    return 0


def _threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
