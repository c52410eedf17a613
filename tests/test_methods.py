"""The method registry and interface (jpq/methods): every conf/method/<name>.yaml has its method, each
method's start-up rules, its configured epochs, and PIT's float report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from jpq.cli import compose_config
from jpq.cost import evaluate_all, to_uniform
from jpq.errors import ConfigError
from jpq.methods import check_method, epochs_total, get_method, registry
from jpq.models.digits import DigitsCNN
from jpq.search import convert

CONF = Path(__file__).resolve().parents[1] / "conf" / "method"


def test_every_method_config_has_a_method() -> None:
    names = {p.stem for p in CONF.glob("*.yaml")}
    assert names == set(registry()) == {"joint", "mixprec", "edmips", "fixed", "pit", "pit_mixprec"}
    for name in names:
        assert get_method(name).name == name == compose_config([f"method={name}"]).method.name


def test_an_unknown_method_is_one_line() -> None:
    with pytest.raises(ConfigError, match=r"method.name='foo': choose one of .*joint"):
        get_method("foo")


@pytest.mark.parametrize(("overrides", "msg"), [
    (["method=fixed", "method.w_bits=[4,8]"], "method=fixed trains one precision"),
    (["method=fixed", "target.size_kb=8"], "method=fixed does not search; use one of"),
    (["method=pit", "target.fraction=0.5"], "method=pit does not search"),
])
def test_method_rules(overrides: list[str], msg: str) -> None:
    with pytest.raises(ConfigError, match=msg):
        check_method(compose_config(overrides))


def test_steerable_methods_accept_a_target() -> None:
    for name in ("joint", "mixprec", "edmips", "pit_mixprec"):
        assert check_method(compose_config([f"method={name}", "target.size_kb=8"])).name == name


@pytest.mark.parametrize(("overrides", "epochs"), [
    ([], 1 + 1 + 1),                                  # warmup, search, fine-tune
    (["method=fixed"], 1 + 1),                        # nothing to search
    (["phases=[warmup,finetune]"], 1 + 1),
    (["method=pit"], 1 + 1 + 1),                      # PIT's search and fine-tune
    (["method=pit_mixprec"], 1 + 2 + 2),              # PIT's two, then the search and the fine-tune
    (["method=pit_mixprec", "phases=[search]"], 2 + 1),
])
def test_epochs_total(overrides: list[str], epochs: int) -> None:
    assert epochs_total(compose_config(["trainer=smoke", *overrides])) == epochs


def test_pit_reports_a_float_network() -> None:
    """32-bit weights (4 x the 8-bit size), no integer-hardware latency, kept channels counted as float."""
    net = convert(DigitsCNN(), torch.rand(2, 1, 8, 8), pit=True).discretize()
    specs = net.layer_specs(fresh=True)
    pit, joint = get_method("pit"), get_method("joint")
    costs, base = pit.final_costs(specs), joint.final_costs(specs)
    assert base == evaluate_all(specs)
    assert costs["size_kb"] == 4 * base["size_kb"] == 4 * evaluate_all(to_uniform(specs, 8))["size_kb"]
    assert all(math.isnan(costs[k]) for k in ("bitops", "mpic_cycles", "mpic_energy_uj", "ne16_cycles"))
    layer = pit.arch(net)["layers"][0]
    assert layer["w_bits_counts"] == {"0": 0, "32": layer["c_out"]} and layer["kept"] == layer["c_out"]
