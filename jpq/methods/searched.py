"""The precision searches: ``joint`` (the paper's method), ``mixprec``, ``edmips`` and ``fixed``
(docs/method.md §6, §7). One conversion of the seed (the bit sets and the per-layer switch come from
conf/method/<name>.yaml), the search with two optimizers, discretization, the optional NE16 promotion or
budget fit, and the fine-tune of the discrete network. ``fixed`` has nothing to search and only trains.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from rich.progress import Progress
from torch import nn

from jpq.build import build_cost, console, convert_from_cfg, optim_cfg, phase_spec, reference_cost
from jpq.config import a_bits_of, w_bits_of
from jpq.errors import ConfigError
from jpq.methods.base import Method, MethodResult, RunContext, SearchCost, fit_phase
from jpq.search import SearchableNet
from jpq.search.budget import Budget, BudgetCost, check_reachable, repair, resolve_budget
from jpq.search.sampler import anneal
from jpq.train.loop import FitResult, fit
from jpq.train.optim import make_optimizer, make_scheduler, split_decay


def _searches(cfg: DictConfig) -> bool:
    return len(w_bits_of(cfg)) > 1 or len(a_bits_of(cfg)) > 1


def _search_cost(
    ctx: RunContext, net: SearchableNet
) -> tuple[Any, bool, Budget | None, float]:
    """The search's cost model, whether it is normalised, the budget (None: a fixed strength) and the
    normaliser (the 8-bit seed's cost, 1.0 when not normalised)."""
    cfg = ctx.cfg
    cost_model, normalize = build_cost(cfg.cost)
    budget = resolve_budget(cfg, net.layer_specs(fresh=True))
    if budget is not None:  # budget mode: steered by the target's cost model, always normalised
        check_reachable(net, budget)
        cost_model, normalize = budget.cost_model(cfg.cost), True
        console.log(f"budget: {budget.metric} target {budget.value:g}; the multiplier starts at "
                    f"target.start={float(cfg.target.start):g} (strength is not used)")
    scale = reference_cost(cost_model, net.layer_specs(fresh=True)) if normalize else 1.0
    return cost_model, normalize, budget, scale


def _search(
    ctx: RunContext, net: SearchableNet, cost_model: Any, budget: Budget | None, scale: float,
    progress: Progress,
) -> FitResult:
    """The joint search (§6.1): weights and clips, and the logits, each with their optimizer."""
    cfg, ckpt = ctx.cfg, ctx.run_dir / "checkpoints"
    spec = phase_spec(cfg, "search")
    oc, ac = optim_cfg(cfg.trainer.search.optim), optim_cfg(cfg.trainer.arch_optim)
    opt_w = make_optimizer(
        split_decay(net.weight_parameters() + net.clip_parameters(), net.clip_parameters()), oc
    )
    opt_a = make_optimizer([{"params": net.arch_parameters()}], ac)
    term: SearchCost | BudgetCost = SearchCost(
        net, cost_model, float(cfg.strength), cfg.trainer.strength_schedule, spec.epochs, scale
    ) if budget is None else BudgetCost(
        net, cost_model, scale, budget.normalized, init=float(cfg.target.start), rate=float(cfg.target.rate),
        aim=float(cfg.target.aim), state_path=ckpt / "budget_multiplier.json",
    )
    decay = float(cfg.sampler.decay)

    def on_epoch_end(epoch: int) -> dict[str, float]:  # T <- T * decay after every search epoch (§3.4)
        net.set_temperature(anneal(net.state.temperature, decay))
        row = {"temperature": net.state.temperature}
        return row if budget is None else {**row, **term.epoch_end(epoch)}  # type: ignore[union-attr]

    return fit(
        net,
        ctx.data,
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


def _after_discretize(cfg: DictConfig, net: SearchableNet, budget: Budget | None) -> dict[str, Any]:
    """The NE16 promotion (``ne16_promote``) and the budget fit of the discrete network; their record
    fields."""
    info: dict[str, Any] = {}
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
    return info


class Searched(Method):
    """Convert, search (when there is something to search), discretize, fine-tune."""

    steerable = True

    def __init__(self, name: str) -> None:
        self.name = name

    def epochs(self, cfg: DictConfig) -> int:
        t, phases = cfg.trainer, list(cfg.phases)
        total = t.search.epochs if "search" in phases and _searches(cfg) else 0
        return int(total + (t.finetune.epochs if "finetune" in phases else 0))

    def run(self, ctx: RunContext, seed_model: nn.Module, progress: Progress) -> MethodResult:
        cfg = ctx.cfg
        net = convert_from_cfg(cfg, seed_model, ctx.example(), ctx.data.input_quant)
        net.to(ctx.device)
        cost_model, normalize, budget, scale = _search_cost(ctx, net)
        search_res = None
        searchable = bool(net.arch_parameters()) and _searches(cfg)
        if "search" in cfg.phases and searchable and cfg.trainer.search.epochs > 0:
            search_res = _search(ctx, net, cost_model, budget, scale, progress)
        net.discretize()
        info: dict[str, Any] = {"cost_scale": scale, "cost_normalized": normalize}
        info.update(_after_discretize(cfg, net, budget))
        ft_res = None
        if "finetune" in cfg.phases and cfg.trainer.finetune.epochs > 0:
            groups = split_decay(net.weight_parameters() + net.clip_parameters(), net.clip_parameters())
            ft_res = fit_phase(ctx, net, "finetune", groups, seed=cfg.seed + 2, progress=progress)
        return MethodResult(net, search_res, ft_res, (search_res, ft_res), info)


class Fixed(Searched):
    """Fixed-precision QAT: one weight and one activation width, nothing to search (docs/method.md §7)."""

    steerable = False

    def check(self, cfg: DictConfig) -> None:
        w_bits, a_bits = w_bits_of(cfg), a_bits_of(cfg)
        if len(w_bits) > 1 or len(a_bits) > 1:
            raise ConfigError(
                f"method=fixed trains one precision: method.w_bits={list(w_bits)} and "
                f"method.a_bits={list(a_bits)} must be one width each "
                "(search over several with method=joint or mixprec)"
            )


METHODS: dict[str, Method] = {
    "joint": Searched("joint"),
    "mixprec": Searched("mixprec"),
    "edmips": Searched("edmips"),
    "fixed": Fixed("fixed"),
}
