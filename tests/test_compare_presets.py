"""The comparison presets never train the sequential baseline less than the joint search, and the digits
comparison includes a budget-mode point."""

from __future__ import annotations

import pytest

from jpq.cli import compose_config
from jpq.methods import epochs_total


@pytest.mark.parametrize(("experiment", "joint", "sequential"), [("compare_digits", 105, 170),
                                                                 ("compare_cifar10", 42, 64)])
def test_the_sequential_baseline_trains_longer(experiment: str, joint: int, sequential: int) -> None:
    base = compose_config([f"experiment={experiment}"], hydra_config=True)
    epochs: dict[str, set[int]] = {}
    for v in str(base.hydra.sweeper.params["+variant"]).split(","):
        cfg = compose_config([f"experiment={experiment}", f"+variant={v}"])
        epochs.setdefault(cfg.method.name, set()).add(epochs_total(cfg))
    assert epochs["joint"] == {joint} and epochs["pit_mixprec"] == {sequential}
    assert epochs["fixed"] == {joint - base.trainer.search.epochs}  # a fixed precision has no search


def test_digits_comparison_has_a_budget_point() -> None:
    base = compose_config(["experiment=compare_digits"], hydra_config=True)
    variants = str(base.hydra.sweeper.params["+variant"]).split(",")
    cfgs = {v: compose_config(["experiment=compare_digits", f"+variant={v}"]) for v in variants}
    budget = [v for v, c in cfgs.items() if c.target.fraction is not None]
    assert budget == ["joint_budget_25"]
    cfg = compose_config(["experiment=compare_digits", "+variant=joint_budget_25"])
    assert cfg.method.name == "joint" and cfg.target.fraction == 0.25 and cfg.cost.name == "size"
