"""Optimizers and LR schedules of the paper's recipes (docs/method.md §6, docs/benchmarks.md §2.5-§4.4)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from torch import nn

from jpq.errors import ConfigError

OPTIMIZERS = ("adam", "sgd")
SCHEDULERS = ("none", "exp", "step", "multistep", "cosine")


@dataclass
class OptimConfig:
    """One optimizer and its LR schedule.

    ``scheduler``: ``exp`` = ``LambdaLR(gamma**epoch)`` (CIFAR: 0.99), ``step`` = StepLR(step_size, gamma)
    (Tiny ImageNet: 7, 0.1), ``multistep`` = lr multiplied by ``factors[i]`` after epoch ``milestones[i]``
    (KWS: 50/100/150 -> 1/2, 1/2, 1/2.5), ``cosine`` = CosineAnnealing(T_max=epochs).
    """

    name: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    nesterov: bool = False
    scheduler: str = "exp"
    gamma: float = 0.99
    step_size: int = 7
    milestones: list[int] = field(default_factory=list)
    factors: list[float] = field(default_factory=list)

    def validate(self, where: str) -> None:
        """Every value in its valid range (raises a one-line ConfigError naming the key)."""
        if self.name not in OPTIMIZERS:
            raise ConfigError(f"{where}.name={self.name!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.scheduler not in SCHEDULERS:
            raise ConfigError(f"{where}.scheduler={self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"{where}.lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"{where}.weight_decay must be a finite number >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ConfigError(f"{where}.momentum must be in [0, 1), got {self.momentum}")
        if self.scheduler in ("exp", "step") and not 0 < self.gamma <= 1:
            raise ConfigError(f"{where}.gamma must be in (0, 1] (the lr decays), got {self.gamma}")
        if self.scheduler == "step" and self.step_size < 1:
            raise ConfigError(f"{where}.step_size must be >= 1 epoch, got {self.step_size}")
        if len(self.milestones) != len(self.factors):
            raise ConfigError(f"{where}: milestones and factors must have the same length")
        ms = list(self.milestones)
        if any(m < 0 for m in ms) or ms != sorted(set(ms)):
            raise ConfigError(f"{where}.milestones must be increasing epochs >= 0, got {ms}")
        if not all(math.isfinite(f) and f > 0 for f in self.factors):
            raise ConfigError(f"{where}.factors must be finite numbers > 0, got {list(self.factors)}")


def make_optimizer(groups: Iterable[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """Build the optimizer; each param group may override ``weight_decay`` (PACT clips: 0)."""
    groups = [g for g in groups if g["params"]]
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(
        groups,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum,
        nesterov=cfg.nesterov and cfg.momentum > 0,
    )


def make_scheduler(
    opt: torch.optim.Optimizer, cfg: OptimConfig, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "exp":
        gamma = cfg.gamma
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: gamma**e)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.step_size, gamma=cfg.gamma)
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    milestones, factors = list(cfg.milestones), list(cfg.factors)

    def mult(e: int) -> float:
        m = 1.0
        for ms, f in zip(milestones, factors, strict=True):
            if e >= ms:
                m *= f
        return m

    return torch.optim.lr_scheduler.LambdaLR(opt, mult)


def split_decay(params: Iterable[nn.Parameter], no_decay: Iterable[nn.Parameter]) -> list[dict]:
    """Param groups: ``no_decay`` (PACT clips) with weight_decay 0, the rest with the optimizer's."""
    nd = {id(p) for p in no_decay}
    ps = [p for p in params if p.requires_grad]
    return [
        {"params": [p for p in ps if id(p) not in nd]},
        {"params": [p for p in ps if id(p) in nd], "weight_decay": 0.0},
    ]
