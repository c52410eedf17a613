"""One run: warmup -> joint search -> discretize -> fine-tune -> report (the paper's Fig. 1, §6.1).

``run(cfg, run_dir)`` is what ``jpq search`` calls for every job; it writes ``result.json``/``result.csv``
(one Pareto point), ``arch.json`` (the architecture and its per-layer costs), ``history.csv`` (per
epoch) and checkpoints into ``run_dir``. A job whose ``result.json`` exists is skipped; an interrupted
job continues from its last finished epoch.
"""

from __future__ import annotations

import math
import os
import pickle
import random
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from torch import Tensor, nn

from jpq.config import a_bits_of, validate, w_bits_of
from jpq.cost import evaluate_all, get_cost, per_layer_table, to_uniform
from jpq.cost.spec import LayerSpec
from jpq.data import INPUT_QUANT, DataBundle, Split, load_dataset
from jpq.errors import ConfigError, RunDirError
from jpq.export.pit import pit_net_of, pruned_float_model, save_pit_model
from jpq.io import atomic_torch_save, atomic_write_json, atomic_write_text, cpu_state
from jpq.pareto.plot import plot_arch
from jpq.pareto.records import write_result
from jpq.quant.fused import check_step
from jpq.search import SearchableNet, convert
from jpq.search.budget import BudgetCost, check_reachable, check_target, repair, resolve_budget
from jpq.search.sampler import anneal
from jpq.train import resources
from jpq.train.cache import cache_key, cached
from jpq.train.epochs import epochs_total
from jpq.train.loop import FitResult, PhaseSpec, fit
from jpq.train.memory import keep_freed_memory
from jpq.train.optim import OptimConfig, make_optimizer, make_scheduler, split_decay

console = Console(stderr=True)


# -- building blocks --------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``; parallel jobs of a node take distinct GPUs (resources)."""
    return resources.resolve_device(name)[0]


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def build_cost(cost_cfg: DictConfig) -> tuple[Any, bool]:
    """The cost model of the search loss and whether it is normalised by the 8-bit seed's cost."""
    c = OmegaConf.to_container(cost_cfg, resolve=True)
    assert isinstance(c, dict)
    normalize = bool(c.pop("normalize", True))
    name = c.pop("name")
    if "_target_" not in c:
        return get_cost(name, **c), normalize
    try:
        model = instantiate(c)
    except Exception as e:  # noqa: BLE001 - instantiate wraps import and argument errors
        raise ConfigError(f"cannot build cost model {c['_target_']}: {_instantiate_error(e)}") from e
    from jpq.cost.registry import CostModel

    if not isinstance(model, CostModel):
        raise ConfigError(f"cost._target_={c['_target_']} is not a jpq cost model (a CostModel subclass)")
    return model, normalize


def build_model(cfg: DictConfig, num_classes: int, in_channels: int) -> nn.Module:
    try:
        return instantiate(cfg.model, num_classes=num_classes, in_channels=in_channels)
    except Exception as e:  # noqa: BLE001 - instantiate wraps import and argument errors
        target = cfg.model.get("_target_", "?")
        raise ConfigError(f"cannot build model {target}: {_instantiate_error(e)}") from e


def load_data(cfg: DictConfig) -> DataBundle:
    d = cfg.dataset
    opts: dict[str, Any] = {"download": d.download, "seed": cfg.seed}
    if d.val_size is not None:
        opts["val_size"] = d.val_size
    if d.name == "gsc":
        opts["class_weights"] = d.class_weights
    if d.name != "digits":
        opts["progress"] = cfg.progress
    data = load_dataset(d.name, cfg.data_dir, **opts)
    if tuple(data.input_shape) != tuple(d.input_shape) or data.num_classes != d.num_classes:
        raise ConfigError(
            f"dataset {d.name}: config says input {tuple(d.input_shape)} / {d.num_classes} "
            f"classes, the data has {tuple(data.input_shape)} / {data.num_classes}"
        )
    if d.limit_train is not None:
        data.train = Split(data.train.x[: d.limit_train], data.train.y[: d.limit_train])
    return data


def phase_spec(cfg: DictConfig, name: str) -> PhaseSpec:
    p = cfg.trainer[name]
    return PhaseSpec(
        name=name,
        epochs=p.epochs,
        batch_size=p.batch_size,
        eval_batch_size=p.eval_batch_size,
        patience=p.patience,
        early_stop_start=p.early_stop_start,
        monitor=p.monitor,
        max_batches=p.max_batches,
    )


def optim_cfg(node: DictConfig) -> OptimConfig:
    return OptimConfig(**OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]


class SearchCost:
    """The search's regularizer: ``cost(specs) / cost_8bit`` on the theta of the last forward pass (§5.1),
    evaluated once per step, and the strength to multiply it by at each epoch.

    Incremental schedule (§6.1): ``min(s/100 + e * 0.99 s / floor(N/2), s)``.
    """

    def __init__(
        self, net: SearchableNet, cost_model: Any, strength: float, schedule: str, epochs: int, scale: float
    ) -> None:
        self.net, self.cost_model, self.strength = net, cost_model, strength
        self.schedule, self.epochs, self.scale = schedule, epochs, scale

    def strength_at(self, epoch: int) -> float:
        if self.schedule == "constant":
            return self.strength
        half = max(1, self.epochs // 2)
        return min(self.strength / 100 + epoch * 0.99 * self.strength / half, self.strength)

    def __call__(self, *, fresh: bool = False) -> Tensor:
        return self.cost_model(self.net.layer_specs(fresh=fresh)) / self.scale


def fit_phase(
    ctx: RunContext,
    model: nn.Module,
    phase: str,
    param_groups: list[dict],
    *,
    seed: int,
    progress: Progress,
    name: str | None = None,
    config_hash: str | None = None,
) -> FitResult:
    """Train one phase with a single optimizer (warmup, fine-tunes): ``trainer.<phase>`` settings;
    its checkpoint is guarded by ``config_hash`` (default: the job's ``run_hash``)."""
    spec = phase_spec(ctx.cfg, phase)
    if name is not None:
        spec.name = name
    oc = optim_cfg(ctx.cfg.trainer[phase].optim)
    opt = make_optimizer(param_groups, oc)
    return fit(
        model,
        ctx.data,
        spec,
        [(opt, make_scheduler(opt, oc, spec.epochs))],
        seed=seed,
        ckpt_dir=ctx.run_dir / "checkpoints",
        progress=progress,
        config_hash=config_hash or ctx.run_hash,
    )


def reference_cost(cost_model: Any, specs: list[LayerSpec]) -> float:
    """Cost of the same seed with every channel and activation at 8 bits (normaliser, docs/method.md §5.8)."""
    return float(cost_model(to_uniform(specs, 8, 8)))


# -- the run ----------------------------------------------------------------------------------------
# settings that never change what a run computes: left out of the hash that guards its checkpoints
_UNHASHED = ("progress", "data_dir", "cache_dir", "device", "threads")


def run_hash(cfg: DictConfig) -> str:
    """The hash of everything in the job's config that determines its training; a phase checkpoint
    written under another hash is not resumed."""
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    return cache_key({k: v for k, v in c.items() if k not in _UNHASHED and k != "hydra"})


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: DataBundle
    init_state: dict[str, Any] | None = None  # warmup.init_from, read (and checked) once by run()
    run_hash: str | None = None  # the job's config (see run_hash): every phase after the warmup

    def __post_init__(self) -> None:
        if self.run_hash is None:
            self.run_hash = run_hash(self.cfg)


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
        raise ConfigError(f"warmup.init_from={init}: unreadable checkpoint ({_first_line(e)})") from e
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
        raise ConfigError(f"{what} ({_first_line(e)})") from e
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (", ..." if len(keys) > 3 else "")

        parts = ([f"{len(missing)} missing keys ({few(missing)})"] if missing else []) + (
            [f"{len(unexpected)} unexpected keys ({few(unexpected)})"] if unexpected else [])
        raise ConfigError(f"{what}: {'; '.join(parts)}")


def warmup(ctx: RunContext, progress: Progress) -> tuple[nn.Module, FitResult | None, bool]:
    """Phase 1 (float, BN): cached by a key of everything that determines it."""
    cfg, data = ctx.cfg, ctx.data
    model = build_model(cfg, data.num_classes, data.input_shape[0])
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


def _first_line(e: Exception, limit: int = 300) -> str:
    """An exception's message as one line (torch's load errors span many)."""
    text = "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _instantiate_error(e: Exception) -> str:
    """Hydra's instantiate error as one line: the underlying error, without Hydra's hints."""
    cause = e.__cause__
    if isinstance(cause, TypeError):  # bad arguments of the target
        return _first_line(cause)
    text = _first_line(e).split(", set env var HYDRA_FULL_ERROR")[0]
    return text.split("; full_key:")[0]


def pit_stage(
    ctx: RunContext, seed_model: nn.Module, progress: Progress
) -> tuple[nn.Module, SearchableNet, FitResult | None, FitResult | None]:
    """The sequential baseline's first half (§7): PIT float channel pruning with its own mask logits and a
    parameter-count cost, physical export, float fine-tune. Returns the pruned float network."""
    cfg, data = ctx.cfg, ctx.data
    example = data.train.x[: min(2, len(data.train))].cpu()
    net = pit_net_of(seed_model, example).to(ctx.device)
    # PIT's cost is the number of float parameters, sum Cin_eff * C_eff * k^2 with Cin_eff live: the size
    # cost of the kept channels (all in one slot) is proportional to it, and normalisation removes the factor
    cost_model = get_cost("size", detach_cin=False)
    scale = reference_cost(cost_model, net.layer_specs(fresh=True))
    ckpt = ctx.run_dir / "checkpoints"
    spec = phase_spec(cfg, "search")
    spec.name = "pit_search"
    oc = optim_cfg(cfg.trainer.search.optim)
    ac = OptimConfig(
        name="adam",
        lr=float(cfg.method.pit_arch_lr),
        weight_decay=0.0,
        scheduler=oc.scheduler,
        gamma=oc.gamma,
        step_size=oc.step_size,
        milestones=oc.milestones,
        factors=oc.factors,
    )
    opt_w = make_optimizer([{"params": net.weight_parameters()}], oc)
    opt_g = make_optimizer([{"params": net.arch_parameters()}], ac)
    term = SearchCost(
        net, cost_model, float(cfg.method.pit_strength), cfg.trainer.strength_schedule, spec.epochs, scale
    )
    s_res = fit(
        net,
        data,
        spec,
        [(opt_w, make_scheduler(opt_w, oc, spec.epochs)), (opt_g, make_scheduler(opt_g, ac, spec.epochs))],
        seed=cfg.seed + 11,
        cost_term=term,
        ckpt_dir=ckpt,
        progress=progress,
        config_hash=ctx.run_hash,
    )
    net.discretize()
    pruned = pruned_float_model(net).to(ctx.device)
    f_res = None
    if cfg.trainer.finetune.epochs > 0:
        f_res = fit_phase(
            ctx,
            pruned,
            "finetune",
            [{"params": list(pruned.parameters())}],
            seed=cfg.seed + 12,
            progress=progress,
            name="pit_finetune",
        )
    return pruned, net, s_res, f_res


def search_and_finetune(
    ctx: RunContext, seed_model: nn.Module, progress: Progress
) -> tuple[SearchableNet, FitResult | None, FitResult | None, dict[str, Any]]:
    cfg, data = ctx.cfg, ctx.data
    w_bits, a_bits = w_bits_of(cfg), a_bits_of(cfg)
    example = data.train.x[: min(2, len(data.train))].cpu()
    net = convert(
        seed_model.cpu(),
        example,
        w_bits=w_bits,
        a_bits=a_bits,
        sampler=cfg.sampler.name,
        gumbel_hard=cfg.sampler.gumbel_hard,
        temperature=cfg.sampler.temperature,
        per_layer=cfg.method.per_layer,
        input_quant=data.input_quant,
        keep_alive=cfg.keep_alive,
        fused=cfg.trainer.search_step == "fused",
    )
    net.to(ctx.device)
    cost_model, normalize = build_cost(cfg.cost)
    budget = resolve_budget(cfg, net.layer_specs(fresh=True))
    if budget is not None:  # budget mode: steered by the target's cost model, always normalised
        check_reachable(net, budget)
        cost_model, normalize = budget.cost_model(cfg.cost), True
    scale = reference_cost(cost_model, net.layer_specs(fresh=True)) if normalize else 1.0
    ckpt = ctx.run_dir / "checkpoints"
    searchable = bool(net.arch_parameters()) and (len(w_bits) > 1 or len(a_bits) > 1)
    search_res = None
    if "search" in cfg.phases and searchable and cfg.trainer.search.epochs > 0:
        spec = phase_spec(cfg, "search")
        oc, ac = optim_cfg(cfg.trainer.search.optim), optim_cfg(cfg.trainer.arch_optim)
        opt_w = make_optimizer(
            split_decay(net.weight_parameters() + net.clip_parameters(), net.clip_parameters()), oc
        )
        opt_a = make_optimizer([{"params": net.arch_parameters()}], ac)
        term: SearchCost | BudgetCost = SearchCost(
            net, cost_model, float(cfg.strength), cfg.trainer.strength_schedule, spec.epochs, scale
        ) if budget is None else BudgetCost(
            net, cost_model, scale, budget.normalized, init=float(cfg.strength), rate=float(cfg.target.rate),
            aim=float(cfg.target.aim), state_path=ckpt / "budget_multiplier.json",
        )
        decay = float(cfg.sampler.decay)

        def on_epoch_end(epoch: int) -> dict[str, float]:  # T <- T * decay after every search epoch (§3.4)
            net.set_temperature(anneal(net.state.temperature, decay))
            row = {"temperature": net.state.temperature}
            return row if budget is None else {**row, **term.epoch_end(epoch)}  # type: ignore[union-attr]

        search_res = fit(
            net,
            data,
            spec,
            [
                (opt_w, make_scheduler(opt_w, oc, spec.epochs)),
                (opt_a, make_scheduler(opt_a, ac, spec.epochs)),
            ],
            seed=cfg.seed + 1,
            cost_term=term,
            on_epoch_end=on_epoch_end,
            ckpt_dir=ckpt,
            progress=progress,
            config_hash=ctx.run_hash,
        )
    net.discretize()
    info: dict[str, Any] = {"cost_scale": scale, "cost_normalized": normalize}
    if cfg.ne16_promote:
        from jpq.cost import ne16_cycles
        from jpq.search.refine import promote_for_ne16

        info["ne16_cycles_before_promote"] = float(ne16_cycles(net.layer_specs(fresh=True)))
        info["ne16_promoted_channels"] = promote_for_ne16(net)["channels_promoted"]
        console.log(f"NE16 promotion: {info['ne16_promoted_channels']} channels raised")
    if budget is not None:  # the discrete network meets the target: demote where the logits lose least
        info.update(repair(net, budget, fill=bool(cfg.target.fill)), cost=budget.cost)
        console.log(f"budget: {budget.metric} {info['target_cost_argmax']:g} at the argmax, "
                    f"{info['target_cost']:g} after the fit (target {budget.value:g})")
    ft_res = None
    if "finetune" in cfg.phases and cfg.trainer.finetune.epochs > 0:
        groups = split_decay(net.weight_parameters() + net.clip_parameters(), net.clip_parameters())
        ft_res = fit_phase(ctx, net, "finetune", groups, seed=cfg.seed + 2, progress=progress)
    return net, search_res, ft_res, info


def check_config(cfg: DictConfig) -> dict[str, Any] | None:
    """Every check that needs no data: the values (``validate``), what the cost model can model, that the
    seed network builds and that ``warmup.init_from`` fits it. Returns the init_from state (or None)."""
    validate(cfg)
    check_step(cfg.trainer.search_step, cfg.device == "cpu" or not torch.cuda.is_available())
    cost_model, _ = build_cost(cfg.cost)
    iq = INPUT_QUANT.get(cfg.dataset.name)
    in_bits = iq.bits if iq is not None and iq.bits is not None else a_bits_of(cfg)
    cost_model.check(w_bits_of(cfg), a_bits_of(cfg), in_bits)
    seed = build_model(cfg, cfg.dataset.num_classes, cfg.dataset.input_shape[0])
    check_target(cfg, seed)  # an unreachable target fails here, before the data is loaded
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
    done = run_dir / "result.json"
    finished = _finished(done, run_hash(cfg))
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
    with _progress(cfg.progress) as progress:
        tw = time.perf_counter()
        seed_model, warm_res, warm_hit = warmup(ctx, progress)
        wall_warm = time.perf_counter() - tw
        pit_res: tuple[FitResult | None, FitResult | None] = (None, None)
        if cfg.method.name in ("pit", "pit_mixprec"):
            seed_model, pit_net, *pit = pit_stage(ctx, seed_model, progress)
            pit_res = (pit[0], pit[1])
            # the pruned float seed: what pit_mixprec searches, and the final network of pit alone
            save_pit_model(run_dir / "checkpoints" / "pit_model.pt", pit_net, seed_model)
        if cfg.method.name == "pit":
            net, search_res, ft_res, extra = pit_net, pit_res[0], pit_res[1], {}
        else:
            net, search_res, ft_res, extra = search_and_finetune(ctx, seed_model, progress)
    net.eval()
    specs = net.layer_specs(fresh=True)
    costs = evaluate_all(specs)
    if cfg.method.name == "pit":  # a float network: 32-bit weights, no integer-hardware latency
        costs = {
            **costs,
            "size_bits": 4 * costs["size_bits"],
            "size_kb": 4 * costs["size_kb"],
            "bitops": math.nan,
            "mpic_cycles": math.nan,
            "mpic_energy_uj": math.nan,
            "ne16_cycles": math.nan,
        }
    final = ft_res or search_res
    if final is None:  # nothing trained after the conversion: evaluate the discrete network as is
        from jpq.train.loop import evaluate

        bs = cfg.trainer.finetune.eval_batch_size
        _, v_acc = evaluate(net, data.val, bs)
        _, t_acc = evaluate(net, data.test, bs)
    else:
        v_acc, t_acc = final.val_acc, final.test_acc
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
        "search_val_acc": search_res.val_acc if search_res else math.nan,
        "final_val_acc": v_acc,
        "final_test_acc": t_acc,
        **costs,
        "wall_s_warmup": wall_warm,
        "warmup_cache_hit": warm_hit,
        "wall_s_search": search_res.wall_s if search_res else 0.0,
        "wall_s_finetune": ft_res.wall_s if ft_res else 0.0,
        "wall_s_pit": sum(r.wall_s for r in pit_res if r is not None),
        "wall_s_total": time.perf_counter() - t0,
        "epochs_total": epochs_total(cfg),
        "run_dir": str(run_dir),
        "config_hash": ctx.run_hash,
    }
    for k, v in (final.extra_test_acc if final else {}).items():
        record[f"final_test_acc_{k}"] = v
    record.update(extra)
    arch = net.arch()
    if cfg.method.name == "pit":
        for layer in arch["layers"]:  # kept PIT channels are float
            layer["w_bits_counts"] = {"0": layer["w_bits_counts"]["0"], "32": layer["kept"]}
    table = per_layer_table(specs)
    for layer, row in zip(arch["layers"], table, strict=True):
        layer["costs"] = {k: v for k, v in row.items() if k not in layer}
    atomic_write_json(run_dir / "arch.json", arch)
    plot_arch(arch, run_dir / "arch.png", title=f"{record['method']} strength={record['strength']:g}")
    phases = (warm_res, *pit_res, search_res, ft_res) if cfg.method.name != "pit" else (warm_res, *pit_res)
    rows = [r for res in phases if res for r in res.history]
    atomic_write_text(run_dir / "history.csv", pd.DataFrame(rows).to_csv(index=False))
    atomic_torch_save(run_dir / "checkpoints" / "final.pt", {"state_dict": cpu_state(net)})
    write_result(run_dir, record)
    _summary(record, arch)
    return record


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
