"""The interface every method implements, and the pieces the methods share (docs/architecture.md §2).

A :class:`Method` takes the warmed-up float seed of a run and returns its final network
(:class:`MethodResult`): it builds its searchable network, runs its stages and says how its final
network is costed and described. The pipeline calls nothing else of it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich.progress import Progress
from torch import Tensor, nn

from jpq.build import optim_cfg, phase_spec, run_hash
from jpq.cost import evaluate_all
from jpq.cost.spec import LayerSpec
from jpq.data import DataBundle
from jpq.search import SearchableNet
from jpq.train.loop import FitResult, fit
from jpq.train.optim import make_optimizer, make_scheduler


@dataclass
class RunContext:
    """What a method runs on: the job's config, its folder, the device and the loaded data."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    data: DataBundle
    init_state: dict[str, Any] | None = None  # warmup.init_from, read (and checked) once by the pipeline
    run_hash: str | None = None  # the job's config (see jpq.build.run_hash): every phase after the warmup

    def __post_init__(self) -> None:
        if self.run_hash is None:
            self.run_hash = run_hash(self.cfg)

    def example(self) -> Tensor:
        """Two training inputs on the CPU: what a conversion traces shapes with."""
        return self.data.train.x[: min(2, len(self.data.train))].cpu()


@dataclass
class MethodResult:
    """A method's final network and the phases that trained it.

    ``search`` gives the record's ``search_val_acc``; the final accuracies are those of ``finetune``, else
    of ``search``; ``stages`` are every phase after the warmup, in order (the rows of history.csv);
    ``extra`` are fields added to the record; ``wall_s_pit`` is the time of the PIT stages.
    """

    net: SearchableNet
    search: FitResult | None = None
    finetune: FitResult | None = None
    stages: tuple[FitResult | None, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    wall_s_pit: float = 0.0


class Method(ABC):
    """One search method, registered under ``name`` (``cfg.method.name``, conf/method/<name>.yaml)."""

    name: str
    #: a budget target (``target.*``) can steer its search
    steerable: bool = False
    #: it prunes the seed before its search (a budget fraction is then a share of the pruned network)
    prunes_first: bool = False

    def check(self, cfg: DictConfig) -> None:  # noqa: B027 - most methods have no rule of their own
        """The method's own start-up checks of ``cfg`` (one-line ConfigError)."""

    @abstractmethod
    def epochs(self, cfg: DictConfig) -> int:
        """Configured training epochs after the warmup (early stopping may end a phase sooner)."""

    @abstractmethod
    def run(self, ctx: RunContext, seed_model: nn.Module, progress: Progress) -> MethodResult:
        """Search and train from the warmed-up float ``seed_model``."""

    def final_costs(self, specs: list[LayerSpec]) -> dict[str, float]:
        """Every cost metric of the final network's layer specs."""
        return evaluate_all(specs)

    def arch(self, net: SearchableNet) -> dict[str, Any]:
        """The final architecture as plain data (arch.json)."""
        return net.arch()


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
        return self.cost_model(self.net.stacked_specs(fresh=fresh)) / self.scale


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
