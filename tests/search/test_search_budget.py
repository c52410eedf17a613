"""Budget mode: the discrete fit meets a target with an exact integer cost, the multiplier controller,
the target's checks (jpq/search/budget.py, jpq/search/repair.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from jpq.cost import evaluate_all, to_uniform
from jpq.data import INPUT_QUANT
from jpq.errors import ConfigError
from jpq.models import DSCNN
from jpq.models.digits import DigitsCNN
from jpq.search import convert
from jpq.search.budget import (
    Budget,
    BudgetCost,
    check_reachable,
    repair,
    resolve_budget,
    target_request,
)
from jpq.search.repair import fit_to_budget, floor_cost


def _dscnn(**kw) -> object:
    torch.manual_seed(0)
    net = convert(DSCNN(), torch.rand(2, 1, 49, 10), input_quant=INPUT_QUANT["gsc"], **kw)
    with torch.no_grad():  # logits with a spread, as after a search
        for g in net.groups:
            g.alpha.add_(0.3 * torch.randn_like(g.alpha))
    return net.discretize()


@pytest.mark.parametrize(("metric", "fraction"), [("size_kb", 0.1), ("size_kb", 0.25), ("size_kb", 0.5),
                                                  ("ne16_cycles", 0.25), ("ne16_cycles", 0.5)])
def test_fit_meets_the_target_with_an_exact_integer_cost(metric: str, fraction: float) -> None:
    net = _dscnn()
    seed = evaluate_all(to_uniform(net.layer_specs(fresh=True), 8, 8))[metric]
    assert seed == {"size_kb": 22.016, "ne16_cycles": 204_838}[metric]  # docs/method.md §5.6 reference
    target = fraction * seed
    fit = fit_to_budget(net, metric, target)
    final = evaluate_all(net.layer_specs(fresh=True))
    assert fit.after == final[metric] <= target
    assert fit.after >= 0.85 * target
    assert final["size_bits"] == int(final["size_bits"]) and final["ne16_cycles"] == int(final["ne16_cycles"])
    assert fit.demoted > 0
    # the written-back network is one-hot: its arch() agrees with the counts the fit costed
    arch = net.arch()
    assert all(len(g["channel_bits"]) == g["channels"] and g["kept"] >= 1 for g in arch["groups"])


def test_fit_demotes_the_channels_the_logits_value_least() -> None:
    net = convert(DigitsCNN(), torch.rand(2, 1, 8, 8), w_bits=(0, 2, 4, 8))
    g = net.groups[0]  # conv1, 16 channels, all at 8 bits at the init logits
    with torch.no_grad():
        g.alpha[3, :] = 1.0
        g.alpha[2, :] = 0.0
        g.alpha[2, 5] = 0.99  # channel 5 barely prefers 8 over 4 bits: the cheapest to demote
    net.discretize()
    before = evaluate_all(net.layer_specs(fresh=True))["size_kb"]
    saving_one = 9 * 1 * 4 / 8000  # one 3x3 conv channel with 1 input channel from 8 to 4 bits, in kB
    fit = fit_to_budget(net, "size_kb", before - saving_one / 2, fill=False)
    assert fit.demoted == 1 and net.groups[0].channel_bits()[5] == 4
    assert fit.after == pytest.approx(before - saving_one, abs=1e-12)


def test_fill_uses_the_room_and_never_exceeds() -> None:
    net = convert(DigitsCNN(), torch.rand(2, 1, 8, 8), w_bits=(0, 2, 4, 8))
    with torch.no_grad():
        for g in net.groups:  # an argmax far under any budget: every channel at 2 bits
            g.alpha.zero_()
            g.alpha[1] = 1.0
    net.discretize()
    low = evaluate_all(net.layer_specs(fresh=True))["size_kb"]
    target = 2.0 * low
    fit = fit_to_budget(net, "size_kb", target)
    assert fit.demoted == 0 and fit.promoted > 0
    assert 0.97 * target <= fit.after <= target
    no_fill = convert(DigitsCNN(), torch.rand(2, 1, 8, 8))
    assert fit_to_budget(no_fill.discretize(), "size_kb", 20.0, fill=False).promoted == 0


def test_per_layer_groups_move_as_a_whole() -> None:
    net = _dscnn(w_bits=(2, 4, 8), per_layer=True)
    target = 0.4 * 22.016
    fit = fit_to_budget(net, "size_kb", target)
    assert fit.after <= target
    assert all(len(set(g.channel_bits())) == 1 for g in net.groups)


def test_unreachable_target_is_a_config_error() -> None:
    # NE16 pays a fixed cost per spatial tile and layer: DS-CNN cannot go under 12.9 % of its 8-bit latency
    joint = _dscnn()
    assert floor_cost(joint, "ne16_cycles") == 26_413
    below = r"target.fraction=0.1 \(ne16_cycles 20483.8\) is below the cheapest network the search can reach"
    with pytest.raises(ConfigError, match=below + r" \(ne16_cycles 26413, 0.129 of the 8-bit seed's 204838"):
        check_reachable(joint, Budget("ne16_cycles", 0.1 * 204_838, 204_838, 0.1))
    net = _dscnn(w_bits=(2, 4, 8))  # mixprec: no pruning, the floor is every channel at 2 bits
    floor = floor_cost(net, "size_kb")
    assert floor == pytest.approx(22.016 / 4, rel=1e-9)
    with pytest.raises(ConfigError, match="is below the cheapest network"):
        check_reachable(net, Budget("size_kb", 0.9 * floor, 22.016))
    check_reachable(net, Budget("size_kb", 1.1 * floor, 22.016))
    rec = repair(net, Budget("size_kb", 1.1 * floor, 22.016))
    assert rec["target_cost"] <= rec["target"] and rec["target_ratio"] == rec["target_cost"] / rec["target"]


def _cfg(**target) -> object:
    return OmegaConf.create({
        "method": {"name": target.pop("method", "joint")},
        "cost": {"name": target.pop("cost", "size")},
        "target": {"size_kb": None, "ne16_cycles": None, "mpic_cycles": None, "bitops": None,
                   "fraction": None, "aim": 0.95, "start": 0.1, "rate": 0.15, "fill": True, **target},
    })


def test_target_checks_and_resolution() -> None:
    assert target_request(_cfg()) is None
    assert target_request(_cfg(size_kb=8)) == ("size_kb", 8.0)
    for bad, msg in [({"size_kb": 8, "ne16_cycles": 1e5}, "set one budget target"),
                     ({"size_kb": -1}, "positive"), ({"fraction": 1.5}, r"\(0, 1\]"),
                     ({"fraction": 0.2, "aim": 0}, "aim"),
                     ({"size_kb": 8, "start": float("inf")}, "target.start")]:
        with pytest.raises(ConfigError, match=msg):
            target_request(_cfg(**bad))
    specs = _dscnn().layer_specs(fresh=True)
    b = resolve_budget(_cfg(fraction=0.25, cost="ne16"), specs)
    assert b == Budget("ne16_cycles", 0.25 * 204_838, 204_838, 0.25) and b.cost == "ne16"
    assert b.normalized == pytest.approx(0.25)
    assert resolve_budget(_cfg(size_kb=8), specs) == Budget("size_kb", 8.0, 22.016)


@pytest.mark.parametrize(("overrides", "reachable"), [
    (["target.ne16_cycles=26413"], True),  # DS-CNN's NE16 floor exactly (test above)
    (["target.ne16_cycles=26412"], False),
    (["method=pit_mixprec", "target.ne16_cycles=26412"], False),  # PIT prunes: the same floor as joint
    (["method=pit_mixprec", "target.fraction=0.01"], True),  # a share of the pruned net: checked after PIT
    (["method=mixprec", "target.fraction=0.25"], True),  # no pruning: every channel at 2 bits, 1/4 size
    (["method=mixprec", "target.fraction=0.2499"], False),
])
def test_startup_check_refuses_a_target_below_the_floor(overrides: list[str], reachable: bool) -> None:
    from jpq.build import build_seed_model, check_target_floor
    from jpq.cli import compose_config
    from jpq.methods import get_method

    cfg = compose_config(["dataset=gsc", *overrides])
    seed = build_seed_model(cfg, cfg.dataset.num_classes, cfg.dataset.input_shape[0])
    target_request(cfg)  # the values
    first = get_method(cfg.method.name).prunes_first
    if reachable:
        check_target_floor(cfg, seed, prunes_first=first)
    else:
        with pytest.raises(ConfigError, match="is below the cheapest network the search can reach"):
            check_target_floor(cfg, seed, prunes_first=first)


class _Const:
    """A stand-in network/cost: the cost model returns whatever ``value`` is."""

    def __init__(self) -> None:
        self.value = torch.tensor(0.5)

    def layer_specs(self, fresh: bool = False) -> list:
        return []

    def stacked_specs(self, fresh: bool = False) -> list:  # what the cost term asks for
        return []

    def __call__(self, specs: list) -> torch.Tensor:
        return self.value


def test_controller_raises_the_multiplier_over_budget_and_lowers_it_under(tmp_path: Path) -> None:
    net = _Const()
    state = tmp_path / "mult.json"
    term = BudgetCost(net, net, 1.0, 0.25, init=2.0, rate=0.1, aim=1.0, state_path=state)
    assert term.strength_at(0) == pytest.approx(2.0)
    for _ in range(3):  # cost 0.5 = twice the target: log-error log 2 per epoch
        with torch.enable_grad():
            assert float(term()) == 0.5
    assert float(term(fresh=True)) == 0.5  # not counted: the loop's discrete-cost read-out
    row = term.epoch_end(0)
    assert row["cost_over_aim"] == pytest.approx(2.0)
    assert term.strength_at(1) == pytest.approx(2.0 * math.exp(0.1 * math.log(2.0)))
    assert json.loads(state.read_text())["epoch"] == 0
    net.value = torch.tensor(0.01)  # far under: the error is clipped at -1
    with torch.enable_grad():
        term()
    term.epoch_end(1)
    assert term.strength_at(2) == pytest.approx(2.0 * 2.0 ** 0.1 * math.exp(-0.1))
    # a resumed search continues from the saved multiplier, a fresh one starts at ``init``
    again = BudgetCost(net, net, 1.0, 0.25, init=2.0, rate=0.1, aim=1.0, state_path=state)
    assert again.strength_at(2) == pytest.approx(term.strength_at(2))
    assert BudgetCost(net, net, 1.0, 0.25, init=2.0, state_path=state).strength_at(0) == pytest.approx(2.0)
    assert term.epoch_end(2) == {}  # no training step this epoch: no controller step


def test_budget_run_end_to_end(tmp_path: Path) -> None:
    """A smoke-sized run in budget mode reports a final cost within the target; a bad target is refused
    before any training."""
    from jpq.cli import compose_config
    from jpq.pipeline import check_config, run

    over = ["trainer=smoke", "progress=false", f"cache_dir={tmp_path / 'cache'}", "cost=ne16"]
    cfg = compose_config([*over, "target.fraction=0.5"])
    rec = run(cfg, tmp_path / "run")
    assert rec["target_metric"] == "ne16_cycles" and rec["cost"] == "ne16"
    assert rec["target"] == 0.5 * rec["target_seed_cost"] == 0.5 * 6319
    assert rec["ne16_cycles"] == rec["target_cost"] <= rec["target"]
    assert rec["target_ratio"] >= 0.85 and rec["epochs_total"] == 3
    hist = (tmp_path / "run" / "history.csv").read_text()
    assert "next_multiplier" in hist and "cost_over_aim" in hist
    with pytest.raises(ConfigError, match="set one budget target"):
        check_config(compose_config([*over, "target.fraction=0.5", "target.size_kb=4"]))
    low = tmp_path / "low"  # refused by the start-up check, before the data is loaded or a folder made
    with pytest.raises(ConfigError, match=r"target.ne16_cycles=100 is below .* \(ne16_cycles 1265, 0.2 of"):
        run(compose_config([*over, "target.ne16_cycles=100"]), low)
    assert not low.exists()
