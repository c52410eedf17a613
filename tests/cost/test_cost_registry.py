"""Registry, CostModel classes and their start-up checks, the conf/cost yaml files, and the reporting
helpers (evaluate_all, per_layer_table, to_uniform)."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

from jpq.cost import (
    COST_NAMES,
    METRIC_NAMES,
    BitOpsCost,
    CostModel,
    LayerSpec,
    MPICCost,
    NE16Cost,
    SizeCost,
    evaluate_all,
    get_cost,
    mpic_cycles,
    ne16_cycles,
    per_layer_table,
    register_cost,
    registered_costs,
    size_bits,
    to_uniform,
)
from jpq.cost import registry as registry_module
from jpq.errors import ConfigError

COST_DIR = Path(__file__).resolve().parents[2] / "conf" / "cost"


def test_builtin_costs_are_registered() -> None:
    assert COST_NAMES == ("size", "bitops", "mpic", "ne16")
    assert set(COST_NAMES) <= set(registered_costs())
    expected = {
        "size": (SizeCost, "bits"),
        "bitops": (BitOpsCost, "bitops"),
        "mpic": (MPICCost, "cycles"),
        "ne16": (NE16Cost, "cycles"),
    }
    for name, (cls, unit) in expected.items():
        model = get_cost(name)
        assert type(model) is cls and model.name == name and model.unit == unit


def test_cost_model_call_sums_per_layer(resnet8) -> None:
    specs = resnet8(8)
    for name in COST_NAMES:
        model = get_cost(name)
        per_layer = model.per_layer(specs)
        assert per_layer.shape == (10,)
        assert float(model(specs)) == pytest.approx(float(per_layer.sum()))
    assert float(get_cost("ne16")(specs)) == 155_241


def test_unknown_name_and_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown cost model 'latency'; known: .*mpic.*ne16.*size"):
        get_cost("latency")
    with pytest.raises(ConfigError, match="mpic"):
        get_cost("mpic", detach_cin=False)
    with pytest.raises(ConfigError, match="dw_formula"):
        get_cost("size", dw_formula="exact")
    with pytest.raises(ConfigError, match="dw_formula"):
        size_bits([], dw_formula="exact")  # type: ignore[arg-type]


def test_size_options_are_passed_through(dscnn) -> None:
    model = get_cost("size", detach_cin=False, dw_formula="clean")
    assert isinstance(model, SizeCost) and model.detach_cin is False and model.dw_formula == "clean"
    assert float(model(dscnn(8))) == 22_016 * 8


def test_checks_refuse_what_a_model_cannot_describe() -> None:
    w, a, i = (0, 2, 4, 8), (2, 4, 8), (8,)
    get_cost("size").check(w, a, i)
    get_cost("mpic").check(w, a, i)
    get_cost("bitops").check(w, a, (2, 4, 8))
    cases = [
        ("size", (0, 3, 8), a, i, "weight precision"),
        ("mpic", (0, 2, 16), a, i, "weight precision"),
        ("mpic", w, (1, 8), i, "activation precision"),
        ("bitops", w, a, (16,), "input activation precision"),
        ("ne16", w, (4, 8), i, "activation precision"),
        ("ne16", w, (8,), (2,), "input activation precision"),
    ]
    for name, wb, ab, ib, what in cases:
        with pytest.raises(ConfigError, match=what) as e:
            get_cost(name).check(wb, ab, ib)
        msg = str(e.value)
        assert "\n" not in msg and repr(name) in msg


def test_user_registered_cost(resnet8) -> None:
    @register_cost("kept_channels")
    class KeptChannels(CostModel):
        name = "kept_channels"
        unit = "channels"

        def per_layer(self, specs: list[LayerSpec]) -> torch.Tensor:
            return torch.stack([s.c_eff for s in specs])

    try:
        assert "kept_channels" in registered_costs()
        assert float(get_cost("kept_channels")(resnet8(8))) == 16 * 3 + 32 * 3 + 64 * 3 + 10
        with pytest.raises(ValueError, match="already registered"):

            @register_cost("ne16")
            class Other(CostModel):
                pass

    finally:
        registry_module._REGISTRY.pop("kept_channels", None)
    assert registry_module._REGISTRY["ne16"] is NE16Cost


@pytest.mark.parametrize(
    "name,cls", [("size", SizeCost), ("bitops", BitOpsCost), ("mpic", MPICCost), ("ne16", NE16Cost)]
)
def test_conf_yaml_instantiates_the_model(name, cls) -> None:
    import jpq.cost  # noqa: F401  (the package import must leave every submodule reachable by attribute)

    cfg = OmegaConf.load(COST_DIR / f"{name}.yaml")
    assert cfg.name == name
    assert cfg.pop("normalize") is True  # the pipeline's option, not the model's
    model = hydra.utils.instantiate(cfg)
    assert type(model) is cls and model.name == name
    if name == "size":
        # jpq's default keeps the effective-input-channel gradient (docs/method.md §11 item 1)
        assert model.detach_cin is False and model.dw_formula == "reference"
        relabelled = hydra.utils.instantiate(cfg, name="size_clean", dw_formula="clean")
        assert relabelled.name == "size_clean" and relabelled.dw_formula == "clean"


def test_evaluate_all_keys_and_values(resnet8) -> None:
    m = evaluate_all(resnet8(8))
    assert (
        tuple(m)
        == METRIC_NAMES
        == ("size_bits", "size_kb", "bitops", "mpic_cycles", "mpic_energy_uj", "ne16_cycles")
    )
    assert all(isinstance(v, float) for v in m.values())
    assert m["ne16_cycles"] == 155_241 and round(m["mpic_cycles"]) == 5_953_158


def test_evaluate_all_has_no_graph() -> None:
    n = torch.tensor([0.5, 1.0, 2.0, 4.5], requires_grad=True)
    spec = LayerSpec("c", "conv", (3, 3), (4, 4), 4, 8, n, torch.tensor(4.0), torch.tensor([0.0, 0.0, 1.0]))
    m = evaluate_all([spec])
    assert m["size_bits"] == pytest.approx(4 * 9 * (2 * 1.0 + 4 * 2.0 + 8 * 4.5))
    assert n.grad is None


def test_per_layer_table(dscnn) -> None:
    specs = dscnn(4)
    rows = per_layer_table(specs)
    assert len(rows) == 10
    first = rows[0]
    assert first["name"] == "stem" and first["op"] == "conv" and first["kernel"] == "10x4"
    assert (first["c_in"], first["c_out"], first["kept"], first["cin_eff"]) == (1, 64, 64.0, 1.0)
    assert (first["n_w0"], first["n_w2"], first["n_w4"], first["n_w8"]) == (0.0, 0.0, 64.0, 0.0)
    assert first["a_in_bits"] == 8.0
    assert first["size_bits"] == pytest.approx(2560 * 4, rel=1e-9)
    totals = evaluate_all(specs)
    for key in ("size_bits", "bitops", "mpic_cycles", "mpic_energy_uj", "ne16_cycles"):
        assert sum(r[key] for r in rows) == pytest.approx(totals[key], rel=1e-12)
    assert per_layer_table([]) == []


def test_to_uniform_restores_the_seed(resnet8) -> None:
    # a pruned, mixed, soft network: to_uniform gives back the seed at one precision with cin_eff = c_in
    soft = []
    for s in resnet8(8):
        n = torch.tensor([0.25, 0.25, 0.25, 0.25], dtype=torch.float64) * s.c_out
        soft.append(
            LayerSpec(
                s.name,
                s.op,
                s.kernel,
                s.out_hw,
                s.c_in,
                s.c_out,
                n,
                torch.tensor(s.c_in * 0.5, dtype=torch.float64),
                torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64),
            )
        )
    seed8 = to_uniform(soft, 8)
    assert all(u.n_w.dtype == torch.float64 and u.cin_eff.dtype == torch.float64 for u in seed8)
    assert [u.cin_eff.item() for u in seed8] == [s.c_in for s in soft]
    assert evaluate_all(seed8) == evaluate_all(resnet8(8))
    assert float(ne16_cycles(to_uniform(soft, 4))) == 104_361
    assert round(float(mpic_cycles(to_uniform(soft, 2)))) == 5_000_653
    a4 = to_uniform(soft, 8, a_bits=4)
    assert a4[0].a_in.tolist() == [0.0, 1.0, 0.0]
    # normalised cost of the seed itself is 1
    assert float(size_bits(seed8) / size_bits(to_uniform(seed8, 8))) == 1.0
    with pytest.raises(ValueError, match="w_bits"):
        to_uniform(soft, 0)
    with pytest.raises(ValueError, match="a_bits"):
        to_uniform(soft, 8, a_bits=16)
