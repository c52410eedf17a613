"""Gap filling: budget points go into the widest log-scale gaps of a front (jpq/pareto/fill.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jpq.errors import ConfigError
from jpq.pareto.fill import Gap, fill_front, search_command, widest_gaps
from jpq.pareto.records import RESULT_COLUMNS, collect_results, write_result

# the speech-commands joint sweep: strengths 1 / 1.5 / 2 / 3 / 4 / 8
SWEEP = [(15.2, 98.9), (10.8, 98.6), (10.8, 98.5), (3.4, 97.0), (2.5, 96.1), (1.6, 94.0)]


def _write(root: Path, name: str, kb: float, acc: float, **extra: object) -> None:
    rec = {c: None for c in RESULT_COLUMNS}
    rec.update(dataset="gsc", model="dscnn", method="joint", sampler="softmax", cost="size", strength=1.0,
               seed=14, w_bits="0,2,4,8", a_bits="8", final_test_acc=acc, size_kb=kb, size_bits=kb * 8000)
    rec.update(extra)
    write_result(root / name, rec)


def test_widest_log_gap_first() -> None:
    gaps = widest_gaps([15.2, 10.8, 3.4, 2.5, 1.6], max_ratio=1.5)
    assert [(g.lo, g.hi) for g in gaps] == [(3.4, 10.8), (1.6, 2.5)]  # 3.18x, then 1.56x; 1.41x, 1.36x pass
    assert gaps[0].target == pytest.approx((3.4 * 10.8) ** 0.5, rel=1e-3)  # the geometric middle, 6.06
    assert widest_gaps([15.2, 10.8, 3.4], max_ratio=1.5, tried=[6.0]) == []  # 3.4 .. 10.8 was tried
    assert widest_gaps([1.0, 8.0], max_ratio=2.0)[0] == Gap(1.0, 8.0)
    assert widest_gaps([4.0], max_ratio=2.0) == []


def test_fill_adds_points_until_no_gap_is_wider_than_the_ratio(tmp_path: Path) -> None:
    for i, (kb, acc) in enumerate(SWEEP):
        _write(tmp_path, f"strength={i}", kb, acc)
    _write(tmp_path, "fixed", 3.0, 99.5, method="fixed")  # other methods do not count
    commands: list[list[str]] = []

    def run(cmd: list[str]) -> int:  # a budget point lands just under its target, on the front
        commands.append(cmd)
        values = next(a for a in cmd if a.startswith("target.size_kb=")).split("=")[1].split(",")
        for v in values:
            kb = 0.95 * float(v)
            _write(tmp_path, f"target.size_kb={v}", kb, 97.0 + kb / 10.8, target=float(v))
        return 0

    res = fill_front(tmp_path, ["seed=1,2"], metric="size_kb", max_ratio=2.0, per_round=4, run=run,
                     log=lambda s: None)
    assert res.remaining == [] and res.rounds == 1 and len(res.added) == 1
    assert res.added[0] == pytest.approx(6.06, abs=0.01)
    cmd = commands[0]
    assert cmd[3:6] == ["search", "-m", "seed=1,2"] and "method=joint" in cmd
    assert f"hydra.sweep.dir={tmp_path}" in cmd
    df = collect_results(tmp_path)
    joint = sorted(df.loc[df["method"] == "joint", "size_kb"])
    assert all(b / a <= 2.0 for a, b in zip(joint, joint[1:], strict=False))
    # a second call finds nothing to do
    assert fill_front(tmp_path, metric="size_kb", run=run, log=lambda s: None).added == []


def test_fill_stops_at_the_point_budget_and_on_dominated_points(tmp_path: Path) -> None:
    _write(tmp_path, "a", 1.0, 90.0)
    _write(tmp_path, "b", 64.0, 99.0)

    def dominated(cmd: list[str]) -> int:  # every new point is worse than the cheap one: gaps stay
        for v in next(a for a in cmd if a.startswith("target.size_kb=")).split("=")[1].split(","):
            _write(tmp_path, f"t={v}", float(v), 80.0, target=float(v))
        return 0

    res = fill_front(tmp_path, metric="size_kb", points=3, per_round=1, run=dominated, log=lambda s: None)
    assert len(res.added) == 1 and res.added[0] == 8.0  # tried once, dominated: not retried
    assert [(g.lo, g.hi) for g in res.remaining] == [(1.0, 64.0)]
    with pytest.raises(ConfigError, match="--metric"):
        fill_front(tmp_path, metric="size", run=dominated)
    assert search_command(tmp_path, "ne16_cycles", "mixprec", [1e5, 2e5], ["+variant=joint_1"])[-2:] == [
        "target.ne16_cycles=100000,200000", f"hydra.sweep.dir={tmp_path}"]
