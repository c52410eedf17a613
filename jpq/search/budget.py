"""Budget mode: steer the search to a cost target instead of a fixed strength (docs/method.md §13).

``jpq search target.size_kb=8`` (or ``target.ne16_cycles=``, ``target.mpic_cycles=``, ``target.bitops=``,
``target.fraction=0.25`` of the 8-bit seed under the chosen ``cost``) replaces the constant ``strength``
by a multiplier that a controller adjusts while the search runs, then makes the discrete network fit:

* **Controller** (:class:`BudgetCost`): a Lagrangian. The search loss is ``CE + mu * cost/cost_8bit``
  and after every search epoch ``log mu += rate * clip(log(argmax cost / (aim * target)), -1, 1)``:
  the multiplier rises while the cost is over the aim and falls while it is under, so the cost settles
  *at* the target, not anywhere below it (a penalty on the excess alone stops pushing as soon as the
  cost fits, and a network pushed far under regrows only slowly). The step is multiplicative because
  useful strengths span orders of magnitude (0.01 .. 10) and the cost responds to log(mu); the gain is
  small (0.15 per epoch) because the architecture answers a change of mu only after a few epochs of
  the logits' momentum, and a large gain overshoots into a collapsed network. ``target.start`` (0.1)
  is the starting multiplier, not ``strength``: started at 1 the argmax of an NE16 target at 25 % falls
  to the cost floor within two epochs and stays there (docs/benchmarks.md §7.1). ``aim`` (< 1) leaves
  headroom for the argmax, close to but not exactly the
  relaxed network. The error is the cost of the argmax network, the one that is kept, not the relaxed
  expected cost: with NE16 the relaxed cost pays a partial tile per precision and stays above a low
  target even when the argmax is at its floor, so a controller on it winds the multiplier up for ever.
  One host sync per epoch, none per step. Observed on the digits default: the relaxed
  cost barely moves until the multiplier crosses a threshold and then drops far under the aim within two
  epochs (every channel of a group sees the same cost gradient); the multiplier then falls and the
  network regrows, slowly, so the argmax usually ends under the target and the fit below fills it.
* **Fit** (:func:`repair`, jpq/search/repair.py): after the argmax, while the exact cost of the
  discrete network is over the target, demote the channels whose logits lose least per unit of cost
  saved; with ``target.fill`` (default) then promote channels the same way while the network stays
  within the target. The record reports the target, the argmax's cost and the final cost.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from jpq.cost import to_uniform
from jpq.cost.spec import LayerSpec
from jpq.errors import ConfigError
from jpq.search.repair import fit_to_budget, floor_cost, metric_value

#: target keys in metric units -> the cost model the search is steered by
TARGET_COSTS: dict[str, str] = {
    "size_kb": "size", "ne16_cycles": "ne16", "mpic_cycles": "mpic", "bitops": "bitops",
}
#: cost model name -> the result metric of ``target.fraction``
COST_METRIC: dict[str, str] = {v: k for k, v in TARGET_COSTS.items()}


# -- the target -------------------------------------------------------------------------------------
def target_request(cfg: DictConfig) -> tuple[str, float] | None:
    """``(key, value)`` of the one target set in ``cfg.target`` (``key`` is a metric or ``fraction``),
    None when none is; checks the values (one-line ConfigError)."""
    t = cfg.get("target")
    if t is None:
        return None
    keys = (*TARGET_COSTS, "fraction")
    given = [(k, t.get(k)) for k in keys if t.get(k) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise ConfigError(f"set one budget target, got {', '.join(f'target.{k}' for k, _ in given)}")
    key, value = given[0]
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"target.{key} must be a positive number, got {value}")
    if key == "fraction" and value > 1:
        raise ConfigError(f"target.fraction is a share of the 8-bit seed's cost, in (0, 1]; got {value}")
    if key == "fraction" and cfg.cost.name not in COST_METRIC:
        raise ConfigError(
            f"target.fraction: cost={cfg.cost.name} has no metric; use {', '.join(COST_METRIC)}"
        )
    if not 0 < float(t.aim) <= 1:
        raise ConfigError(f"target.aim must be in (0, 1], got {t.aim}")
    if not float(t.rate) > 0:
        raise ConfigError(f"target.rate must be > 0, got {t.rate}")
    if not 0 < float(t.start) < math.inf:
        raise ConfigError(f"target.start must be a finite number > 0, got {t.start}")
    return key, value


@dataclass(frozen=True)
class Budget:
    """A resolved target: ``value`` in the unit of result metric ``metric``; ``seed_value`` is the 8-bit
    seed's cost in that unit; ``fraction`` is set when the target was given as one."""

    metric: str
    value: float
    seed_value: float
    fraction: float | None = None

    @property
    def cost(self) -> str:
        return TARGET_COSTS[self.metric]

    @property
    def normalized(self) -> float:
        """The target relative to the 8-bit seed (the unit of the search's normalised cost)."""
        return self.value / self.seed_value

    def cost_model(self, cost_cfg: DictConfig) -> Any:
        """The search's cost model: ``cost_cfg``'s when it is the target's model (its options kept),
        else the target's model with default options."""
        from jpq.cost import get_cost

        if cost_cfg.name == self.cost:
            c = OmegaConf.to_container(cost_cfg, resolve=True)
            assert isinstance(c, dict)
            c.pop("normalize", None)
            c.pop("name")
            if "_target_" in c:
                from hydra.utils import instantiate

                return instantiate(c)
            return get_cost(self.cost, **c)
        return get_cost(self.cost)


def resolve_budget(cfg: DictConfig, specs: Sequence[LayerSpec]) -> Budget | None:
    """The budget of ``cfg`` for the network of ``specs`` (a fraction is taken of its 8-bit version)."""
    req = target_request(cfg)
    if req is None:
        return None
    key, value = req
    metric = COST_METRIC[cfg.cost.name] if key == "fraction" else key
    seed = metric_value(to_uniform(specs, 8, 8), metric)
    if key == "fraction":
        return Budget(metric, value * seed, seed, value)
    return Budget(metric, value, seed)


# -- the controller ---------------------------------------------------------------------------------
class BudgetCost:
    """The search regularizer of budget mode (a :class:`~jpq.train.loop.CostTerm`).

    ``__call__`` is the normalised cost, as for a fixed strength, and sums the epoch's expected costs;
    ``strength_at`` is the current multiplier; ``epoch_end`` takes one controller step from the cost of
    the argmax network at the end of the epoch (and reports the epoch's mean expected cost too).
    ``state_path`` keeps the multiplier across an interrupted search.
    """

    def __init__(
        self,
        net: Any,
        cost_model: Any,
        scale: float,
        target: float,
        *,
        init: float = 1.0,
        rate: float = 0.15,
        aim: float = 0.95,
        bounds: tuple[float, float] = (1e-3, 1e3),
        state_path: Path | None = None,
    ) -> None:
        self.net, self.cost_model, self.scale = net, cost_model, scale
        self.goal = float(target) * float(aim)
        self.rate = float(rate)
        self.log_lo, self.log_hi = math.log(bounds[0]), math.log(bounds[1])
        self.init = self._clamp(math.log(max(init, bounds[0])))
        self.log_mult: float | None = None
        self.state_path = state_path
        self._sum: Tensor | None = None  # the epoch's expected costs, summed on the device
        self._n = 0

    def _clamp(self, log_mult: float) -> float:
        return min(max(log_mult, self.log_lo), self.log_hi)

    def strength_at(self, epoch: int) -> float:
        if self.log_mult is None:  # first epoch of this process: a resumed search continues its multiplier
            self.log_mult = self.init
            if epoch > 0 and self.state_path is not None and self.state_path.is_file():
                saved = json.loads(self.state_path.read_text())
                if saved.get("epoch") == epoch - 1:
                    self.log_mult = float(saved["log_multiplier"])
        return math.exp(self.log_mult)

    def __call__(self, *, fresh: bool = False) -> Tensor:
        c = self.cost_model(self.net.stacked_specs(fresh=fresh)) / self.scale
        if not fresh and torch.is_grad_enabled():
            self._sum = c.detach() if self._sum is None else self._sum + c.detach()
            self._n += 1
        return c

    def step(self, cost: float) -> float:
        """One controller step: ``log mu += rate * clip(log(cost / goal), -1, 1)``; the new ``mu``."""
        if self.log_mult is None:
            self.log_mult = self.init
        err = max(-1.0, min(1.0, math.log(max(cost, 1e-12) / self.goal)))
        self.log_mult = self._clamp(self.log_mult + self.rate * err)
        return math.exp(self.log_mult)

    def epoch_end(self, epoch: int) -> dict[str, float]:
        """The controller step after a search epoch; history columns and the saved multiplier."""
        if self._sum is None or not self._n:
            return {}
        mean = float(self._sum) / self._n
        self._sum, self._n = None, 0
        with torch.no_grad():
            disc = float(self(fresh=True))
        mult = self.step(disc)
        if self.state_path is not None:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            self.state_path.write_text(json.dumps({"epoch": epoch, "log_multiplier": self.log_mult}))
        return {"cost_over_aim": mean / self.goal, "discrete_over_aim": disc / self.goal,
                "next_multiplier": mult}


# -- after the argmax -------------------------------------------------------------------------------
def repair(net: Any, budget: Budget, *, fill: bool = True) -> dict[str, Any]:
    """Fit the discretized ``net`` to the budget in place (:func:`jpq.search.repair.fit_to_budget`) and
    return the record's budget fields."""
    fit = fit_to_budget(net, budget.metric, budget.value, fill=fill)
    return {
        "target_metric": budget.metric,
        "target": budget.value,
        "target_fraction": budget.fraction if budget.fraction is not None else math.nan,
        "target_seed_cost": budget.seed_value,
        "target_cost_argmax": fit.before,
        "target_demoted_channels": fit.demoted,
        "target_promoted_channels": fit.promoted,
        "target_cost": fit.after,
        "target_ratio": fit.after / budget.value,
    }


def check_reachable(net: Any, budget: Budget) -> None:
    """ConfigError (one line) when even the cheapest network the groups allow (every channel
    at the lowest precision, prunable groups down to one channel) is over the target."""
    floor = floor_cost(net, budget.metric)
    if floor > budget.value:
        given = f"fraction={budget.fraction:g} ({budget.metric} {budget.value:g})" if budget.fraction \
            else f"{budget.metric}={budget.value:g}"
        raise ConfigError(
            f"target.{given} is below the cheapest network the search can reach ({budget.metric} {floor:g}, "
            f"{floor / budget.seed_value:.3g} of the 8-bit seed's {budget.seed_value:g})"
        )
