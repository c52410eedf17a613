"""``pit``: PIT float channel pruning alone, the first half of the sequential baseline (docs/method.md §7).

Mask logits per channel (:class:`jpq.search.pit_gate.PitGate`) trained against a parameter-count cost,
physical pruning by the export's graph surgery, a float fine-tune of the pruned network. The final network
is float: its sizes are reported at 32 bits per weight and it has no integer-hardware latency.
"""

from __future__ import annotations

import math
from typing import Any

from omegaconf import DictConfig
from rich.progress import Progress
from torch import nn

from jpq.build import optim_cfg, phase_spec, reference_cost
from jpq.cost import get_cost
from jpq.cost.spec import LayerSpec
from jpq.export.pit import pit_net_of, pruned_float_model, save_pit_model
from jpq.methods.base import Method, MethodResult, RunContext, SearchCost, fit_phase
from jpq.search import SearchableNet
from jpq.train.loop import FitResult, fit
from jpq.train.optim import OptimConfig, make_optimizer, make_scheduler


def _pit_search(ctx: RunContext, net: SearchableNet, progress: Progress) -> FitResult:
    """The mask logits (Adam, ``method.pit_arch_lr``) and the weights against PIT's parameter cost."""
    cfg = ctx.cfg
    # PIT's cost is the number of float parameters, sum Cin_eff * C_eff * k^2 with Cin_eff live: the size
    # cost of the kept channels (all in one slot) is proportional to it, and normalisation removes the factor
    cost_model = get_cost("size", detach_cin=False)
    scale = reference_cost(cost_model, net.layer_specs(fresh=True))
    spec = phase_spec(cfg, "search")
    spec.name = "pit_search"
    oc = optim_cfg(cfg.trainer.search.optim)
    schedule = {k: getattr(oc, k) for k in ("scheduler", "gamma", "step_size", "milestones", "factors")}
    ac = OptimConfig(name="adam", lr=float(cfg.method.pit_arch_lr), weight_decay=0.0, **schedule)
    opt_w = make_optimizer([{"params": net.weight_parameters()}], oc)
    opt_g = make_optimizer([{"params": net.arch_parameters()}], ac)
    term = SearchCost(
        net, cost_model, float(cfg.method.pit_strength), cfg.trainer.strength_schedule, spec.epochs, scale
    )
    return fit(
        net,
        ctx.data,
        spec,
        [(opt_w, make_scheduler(opt_w, oc, spec.epochs)), (opt_g, make_scheduler(opt_g, ac, spec.epochs))],
        seed=cfg.seed + 11,
        cost_term=term,
        ckpt_dir=ctx.run_dir / "checkpoints",
        progress=progress,
        config_hash=ctx.run_hash,
    )


def pit_stage(
    ctx: RunContext, seed_model: nn.Module, progress: Progress
) -> tuple[nn.Module, SearchableNet, FitResult, FitResult | None]:
    """PIT search, discretization, physical pruning, float fine-tune; the pruned float network is saved
    as ``checkpoints/pit_model.pt``. Returns it, the discrete PIT net and the two phases' results."""
    cfg = ctx.cfg
    net = pit_net_of(seed_model, ctx.example()).to(ctx.device)
    s_res = _pit_search(ctx, net, progress)
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
    save_pit_model(ctx.run_dir / "checkpoints" / "pit_model.pt", net, pruned)
    return pruned, net, s_res, f_res


def pit_epochs(cfg: DictConfig) -> int:
    """PIT's search and fine-tune use the ``trainer.search`` / ``trainer.finetune`` settings."""
    return int(cfg.trainer.search.epochs + cfg.trainer.finetune.epochs)


class Pit(Method):
    name = "pit"

    def epochs(self, cfg: DictConfig) -> int:
        return pit_epochs(cfg)

    def run(self, ctx: RunContext, seed_model: nn.Module, progress: Progress) -> MethodResult:
        _, net, s_res, f_res = pit_stage(ctx, seed_model, progress)
        wall = sum(r.wall_s for r in (s_res, f_res) if r is not None)
        return MethodResult(net, s_res, f_res, (s_res, f_res), wall_s_pit=wall)

    def final_costs(self, specs: list[LayerSpec]) -> dict[str, float]:
        costs = super().final_costs(specs)  # a float network: 32-bit weights, no integer-hardware latency
        return {
            **costs,
            "size_bits": 4 * costs["size_bits"],
            "size_kb": 4 * costs["size_kb"],
            "bitops": math.nan,
            "mpic_cycles": math.nan,
            "mpic_energy_uj": math.nan,
            "ne16_cycles": math.nan,
        }

    def arch(self, net: SearchableNet) -> dict[str, Any]:
        arch = net.arch()
        for layer in arch["layers"]:  # kept PIT channels are float
            layer["w_bits_counts"] = {"0": layer["w_bits_counts"]["0"], "32": layer["kept"]}
        return arch


METHODS: dict[str, Method] = {"pit": Pit()}
