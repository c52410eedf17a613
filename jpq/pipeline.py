"""One run: warmup -> joint search -> discretize -> fine-tune -> report (the paper's Fig. 1, §6.1).

``run(cfg, run_dir)`` is what ``jpq search`` calls for every job; it writes ``result.json``/``result.csv``
(one Pareto point), ``arch.json`` (the architecture and its per-layer costs), ``history.csv`` (per
epoch) and checkpoints into ``run_dir``. A job whose ``result.json`` exists is skipped; an interrupted
job continues from its last finished epoch.
"""

from __future__ import annotations

import math
import pickle
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import nn

from jpq.build import (
    build_cost,
    build_seed_model,
    check_target_floor,
    console,
    first_line,
    load_data,
    run_hash,
    seed_everything,
)
from jpq.config import a_bits_of, validate, w_bits_of
from jpq.cost import per_layer_table
from jpq.data import INPUT_QUANT, DataBundle
from jpq.errors import ConfigError, RunDirError
from jpq.io import atomic_torch_save, atomic_write_json, atomic_write_text, cpu_state
from jpq.methods import Method, MethodResult, RunContext, check_method, epochs_total, get_method
from jpq.methods.base import fit_phase
from jpq.quant.fused import check_step
from jpq.train import resources
from jpq.train.cache import cache_key, cached
from jpq.train.loop import FitResult
from jpq.train.memory import keep_freed_memory

__all__ = ["RunContext", "apply_init", "check_config", "read_init", "run", "run_hash", "warmup"]


def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; parallel jobs of a node take distinct GPUs (resources)."""
    return resources.resolve_device(name)[0]


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled,
        transient=True,
    )


def read_init(init: str) -> dict[str, Any]:
    """``warmup.init_from``: the state_dict in the file (bare, under "state_dict", or a jpq warmup cache
    file); every way it can fail is a one-line ConfigError."""
    path = Path(init)
    if not path.is_file():
        raise ConfigError(f"warmup.init_from={init}: no such file")
    if not zipfile.is_zipfile(path):
        raise ConfigError(f"warmup.init_from={init}: not a checkpoint written by torch.save")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refuses arbitrary Python objects
        raise ConfigError(
            f"warmup.init_from={init}: holds Python objects, not a state_dict "
            "(save it with torch.save(model.state_dict(), PATH))"
        ) from e
    except Exception as e:  # noqa: BLE001 - whatever else torch.load refuses
        raise ConfigError(f"warmup.init_from={init}: unreadable checkpoint ({first_line(e)})") from e
    if isinstance(state, dict):
        state = state.get("state_dict", state.get("state", state))
    if not isinstance(state, dict):
        raise ConfigError(f"warmup.init_from={init}: holds a {type(state).__name__}, not a state_dict")
    return state


def apply_init(model: nn.Module, state: dict[str, Any], init: str) -> None:
    """Load ``state`` (from :func:`read_init`) into the seed; a mismatch is a one-line ConfigError."""
    what = f"warmup.init_from={init}: not a state_dict of {type(model).__name__}"
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except Exception as e:  # noqa: BLE001 - shape mismatches
        raise ConfigError(f"{what} ({first_line(e)})") from e
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = ([f"{len(missing)} missing keys ({few(missing)})"] if missing else []) + (
            [f"{len(unexpected)} unexpected keys ({few(unexpected)})"] if unexpected else [])
        raise ConfigError(f"{what}: {'; '.join(parts)}")


def warmup(ctx: RunContext, progress: Progress) -> tuple[nn.Module, FitResult | None, bool]:
    """Phase 1 (float, BN): cached by a key of everything that determines it."""
    cfg, data = ctx.cfg, ctx.data
    model = build_seed_model(cfg, data.num_classes, data.input_shape[0])
    init = cfg.warmup.init_from
    if ctx.init_state is not None:
        apply_init(model, ctx.init_state, init)
    if "warmup" not in cfg.phases or cfg.trainer.warmup.epochs == 0:
        return model.to(ctx.device), None, False
    key = cache_key(
        {
            "dataset": OmegaConf.to_container(cfg.dataset),
            "model": OmegaConf.to_container(cfg.model),
            "warmup": OmegaConf.to_container(cfg.trainer.warmup),
            "seed": cfg.seed,
            "init_from": init,
            "init_mtime": Path(init).stat().st_mtime if init else None,
        }
    )
    path = Path(cfg.cache_dir) / "warmup" / f"{data.name}-{key}.pt"

    def train() -> dict[str, Any]:
        console.log(f"warmup: training the float seed (cache miss, key {key})")
        m = model.to(ctx.device)
        params = [p for p in m.parameters() if p.requires_grad]
        res = fit_phase(
            ctx, m, "warmup", [{"params": params}], seed=cfg.seed, progress=progress, config_hash=key
        )
        return {"state": cpu_state(m), "result": asdict(res), "key": key}

    payload, hit = cached(path, train)
    if hit:
        if payload.get("key") != key:
            raise RunDirError(
                f"warmup cache {path} holds the warmup of key {payload.get('key')}, not {key}; delete it"
            )
        console.log(f"warmup: cache hit {path}")
    model.load_state_dict(payload["state"])
    return model.to(ctx.device), FitResult(**payload["result"]), hit


def check_config(cfg: DictConfig, *, wait: bool = True) -> dict[str, Any] | None:
    """Every check that needs no data: the values (``validate``), the method's own rules, what the cost
    model can model, that the seed network builds and that ``warmup.init_from`` fits it. Returns the
    init_from state (or None). ``wait=False`` leaves the fused step's kernel build running in the
    background (the sweep pre-check; :func:`jpq.quant.native.join` ends it)."""
    validate(cfg)
    check_step(cfg.trainer.search_step, cfg.device == "cpu" or not torch.cuda.is_available(), wait=wait)
    method = check_method(cfg)
    cost_model, _ = build_cost(cfg.cost)
    iq = INPUT_QUANT.get(cfg.dataset.name)
    in_bits = iq.bits if iq is not None and iq.bits is not None else a_bits_of(cfg)
    cost_model.check(w_bits_of(cfg), a_bits_of(cfg), in_bits)
    seed = build_seed_model(cfg, cfg.dataset.num_classes, cfg.dataset.input_shape[0])
    check_target_floor(cfg, seed, prunes_first=method.prunes_first)  # before the data is loaded
    if not cfg.warmup.init_from:
        return None
    init_state = read_init(cfg.warmup.init_from)
    apply_init(seed, init_state, cfg.warmup.init_from)
    return init_state


def _finished(done: Path, config_hash: str) -> dict[str, Any] | None:
    """The record of a job that already finished under this config (a sweep rerun skips it); None when
    there is none, or when it was written by another config (one line says so, and the job runs again)."""
    if not done.exists():
        return None
    import json

    try:
        record = json.loads(done.read_text())
    except ValueError:
        console.log(f"{done} is unreadable; running the job again")
        return None
    if record.get("config_hash") != config_hash:
        console.log(
            f"{done} was written by a different config (hash {record.get('config_hash')}, now "
            f"{config_hash}); running the job again"
        )
        return None
    console.log(f"{done.parent}: already finished, skipping (delete result.json to rerun)")
    return record


def run(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Run one job; returns the result record (also written to ``run_dir``)."""
    run_dir = Path(run_dir)
    finished = _finished(run_dir / "result.json", run_hash(cfg))
    if finished is not None:
        return finished
    init_state = check_config(cfg)  # a bad init_from fails before the data is loaded (the data's shape
    keep_freed_memory()  # is checked against cfg.dataset by load_data)
    n_threads, why = resources.set_job_threads(cfg.threads)
    device, where = resources.resolve_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    console.log(f"threads: {n_threads} of {resources.available_cores()} cores ({why}); device: {where}")
    seed_everything(cfg.seed, cfg.deterministic)
    t0 = time.perf_counter()
    data = load_data(cfg).to(device)
    ctx = RunContext(cfg, run_dir, device, data, init_state)
    run_dir.mkdir(parents=True, exist_ok=True)
    method = get_method(cfg.method.name)
    with _progress(cfg.progress) as progress:
        tw = time.perf_counter()
        seed_model, warm_res, warm_hit = warmup(ctx, progress)
        wall_warm = time.perf_counter() - tw
        res = method.run(ctx, seed_model, progress)
    res.net.eval()
    v_acc, t_acc = _final_accuracy(cfg, res, data)
    record: dict[str, Any] = {
        "dataset": cfg.dataset.name,
        "model": _model_name(cfg),
        "method": cfg.method.name,
        "sampler": cfg.sampler.name,
        "cost": cfg.cost.name,
        "strength": float(cfg.strength),
        "seed": cfg.seed,
        "w_bits": ",".join(map(str, w_bits_of(cfg))),
        "a_bits": ",".join(map(str, a_bits_of(cfg))),
        "warmup_val_acc": warm_res.val_acc if warm_res else math.nan,
        "warmup_test_acc": warm_res.test_acc if warm_res else math.nan,
        "search_val_acc": res.search.val_acc if res.search else math.nan,
        "final_val_acc": v_acc,
        "final_test_acc": t_acc,
        **method.final_costs(res.net.layer_specs(fresh=True)),
        "wall_s_warmup": wall_warm,
        "warmup_cache_hit": warm_hit,
        "wall_s_search": res.search.wall_s if res.search else 0.0,
        "wall_s_finetune": res.finetune.wall_s if res.finetune else 0.0,
        "wall_s_pit": res.wall_s_pit,
        "wall_s_total": time.perf_counter() - t0,
        "epochs_total": epochs_total(cfg),
        "run_dir": str(run_dir),
        "config_hash": ctx.run_hash,
    }
    final = res.finetune or res.search
    for k, v in (final.extra_test_acc if final else {}).items():
        record[f"final_test_acc_{k}"] = v
    record.update(res.extra)
    _write(run_dir, method, res, (warm_res, *res.stages), record)
    return record


def _final_accuracy(cfg: DictConfig, res: MethodResult, data: DataBundle) -> tuple[float, float]:
    """Validation and test accuracy of the final network: its last phase's, or, when nothing was trained
    after the conversion, those of the discrete network as it is."""
    final = res.finetune or res.search
    if final is not None:
        return final.val_acc, final.test_acc
    from jpq.train.loop import evaluate

    bs = cfg.trainer.finetune.eval_batch_size
    _, v_acc = evaluate(res.net, data.val, bs)
    _, t_acc = evaluate(res.net, data.test, bs)
    return v_acc, t_acc


def _write(
    run_dir: Path, method: Method, res: MethodResult, phases: tuple[FitResult | None, ...],
    record: dict[str, Any],
) -> None:
    """arch.json/arch.png, history.csv, checkpoints/final.pt and result.json/csv, then the summary."""
    import pandas as pd  # here, not at the top: a sweep's launching process checks jobs, runs none

    from jpq.pareto.plot import plot_arch
    from jpq.pareto.records import write_result

    net = res.net
    arch = method.arch(net)
    table = per_layer_table(net.layer_specs(fresh=True))
    for layer, row in zip(arch["layers"], table, strict=True):
        layer["costs"] = {k: v for k, v in row.items() if k not in layer}
    atomic_write_json(run_dir / "arch.json", arch)
    plot_arch(arch, run_dir / "arch.png", title=f"{record['method']} strength={record['strength']:g}")
    rows = [r for ph in phases if ph for r in ph.history]
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_torch_save(run_dir / "checkpoints" / "final.pt", {"state_dict": cpu_state(net)})
    write_result(run_dir, record)
    _summary(record, arch)


def _model_name(cfg: DictConfig) -> str:
    target = str(cfg.model.get("_target_", "model"))
    return target.rsplit(".", 1)[-1].lower()


def _summary(rec: dict[str, Any], arch: dict[str, Any]) -> None:
    t = Table(
        title=f"jpq {rec['method']} on {rec['dataset']}/{rec['model']}  strength={rec['strength']:g} "
        f"cost={rec['cost']}"
    )
    for col in ("layer", "kept", "w0", "w2", "w4", "w8", "a_bits"):
        t.add_column(col, justify="right" if col != "layer" else "left")
    for layer in arch["layers"]:
        c = layer["w_bits_counts"]
        t.add_row(
            layer["name"],
            f"{layer['kept']}/{layer['c_out']}",
            *(str(c.get(k, 0)) for k in ("0", "2", "4", "8")),
            str(layer["a_bits"] if layer["a_bits"] is not None else "float"),
        )
    console.print(t)
    s = Table(show_header=True)
    for col in ("warmup test %", "final test %", "size kB", "BitOps", "MPIC cycles", "NE16 cycles", "wall s"):
        s.add_column(col, justify="right")
    s.add_row(
        f"{rec['warmup_test_acc']:.2f}",
        f"{rec['final_test_acc']:.2f}",
        f"{rec['size_kb']:.3f}",
        f"{rec['bitops']:.3e}",
        f"{rec['mpic_cycles']:,.0f}",
        f"{rec['ne16_cycles']:,.0f}",
        f"{rec['wall_s_total']:.1f}",
    )
    console.print(s)
