"""Seed aggregation: points that differ only in seed become mean ± std with n_seeds (jpq/pareto/seeds.py)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from jpq.pareto.plot import fronts_figure
from jpq.pareto.records import write_result
from jpq.pareto.report import pareto_report
from jpq.pareto.seeds import aggregate_seeds, point_key


def _record(method: str, point: tuple[float, float, float, float], **over: object) -> dict[str, object]:
    kb, acc, mpic, ne16 = point
    rec: dict[str, object] = {
        "dataset": "digits", "model": "digitscnn", "method": method, "sampler": "softmax", "cost": "size",
        "strength": 1.0, "seed": 14, "w_bits": "0,2,4,8", "a_bits": "8", "warmup_val_acc": 98.0,
        "warmup_test_acc": 98.0, "search_val_acc": acc, "final_val_acc": acc, "final_test_acc": acc,
        "size_bits": kb * 8000, "size_kb": kb, "bitops": None, "mpic_cycles": mpic,
        "mpic_energy_uj": 1.0, "ne16_cycles": ne16, "wall_s_warmup": 1.0, "wall_s_search": 2.0,
        "wall_s_finetune": 1.0, "wall_s_total": 4.0,
    }
    rec.update(over)
    return rec

# (strength, seed) -> (size_kb, accuracy %); strength 2 is the point with three seeds
RUNS = {(1, 1): (8.0, 97.0), (1, 2): (9.0, 98.0), (1, 3): (7.0, 99.0),
        (2, 1): (2.0, 95.0), (2, 2): (3.0, 96.0), (4, 1): (1.0, 90.0)}


def test_point_key_drops_only_the_seed_item() -> None:
    assert point_key("sw/+variant=joint_1,seed=2") == point_key("sw/+variant=joint_1,seed=3")
    assert point_key("sw/seed=2,strength=1") == str(Path("sw/strength=1"))
    assert point_key("sw/strength=1") != point_key("sw/strength=2")
    assert point_key("sw/seed=7") == str(Path("sw/seed"))
    assert point_key("sw/method.w_bits=[2,4],seed=1") == str(Path("sw/method.w_bits=[2,4]"))


def _sweep(root: Path) -> None:
    for (strength, seed), (kb, acc) in RUNS.items():
        over = f"seed={seed},strength={strength}" if strength != 4 else f"strength={strength}"
        write_result(root / over, _record("joint", (kb, acc, 1e5 * kb, 1e4 * kb), strength=float(strength),
                                          seed=seed))


def test_aggregate_mean_std_and_n_seeds(tmp_path: Path) -> None:
    from jpq.pareto.records import collect_results

    _sweep(tmp_path)
    df = aggregate_seeds(collect_results(tmp_path), stats=["final_test_acc", "size_kb"])
    got = df.set_index("strength")
    assert got["n_seeds"].to_dict() == {1.0: 3, 2.0: 2, 4.0: 1}
    assert got.loc[1.0, "final_test_acc"] == pytest.approx(98.0)
    assert got.loc[1.0, "final_test_acc_std"] == pytest.approx(1.0)  # sample std of 97, 98, 99
    assert got.loc[1.0, "size_kb"] == pytest.approx(8.0) and got.loc[1.0, "size_kb_std"] == pytest.approx(1.0)
    assert got.loc[2.0, "final_test_acc"] == pytest.approx(95.5)
    assert got.loc[2.0, "final_test_acc_std"] == pytest.approx(math.sqrt(0.5))
    assert math.isnan(got.loc[4.0, "final_test_acc_std"])
    assert got.loc[1.0, "seeds"] == "1,2,3" and got.loc[1.0, "run_dir"] == str(tmp_path / "strength=1")
    assert got.loc[2.0, "method"] == "joint"
    # without repeated points nothing changes but the count
    one = aggregate_seeds(collect_results(tmp_path / "strength=4"), stats=["final_test_acc"])
    assert one["n_seeds"].tolist() == [1] and "final_test_acc_std" not in one.columns


def test_report_draws_means_with_error_bars(tmp_path: Path) -> None:
    _sweep(tmp_path)
    buf = io.StringIO()
    df = pareto_report(tmp_path, console=Console(file=buf, width=250, color_system=None))
    assert len(df) == 3 and sorted(df["n_seeds"]) == [1, 2, 3]
    csv = pd.read_csv(tmp_path / "pareto.csv")
    assert {"n_seeds", "final_test_acc_std", "size_kb_std", "ne16_cycles_std"} <= set(csv.columns)
    summary = pd.read_csv(tmp_path / "pareto_summary.csv").set_index("group")
    assert summary.loc["joint", "n_seeds"] == 1  # the fewest seeds any point of the group rests on
    out = buf.getvalue()
    assert "98.00 ± 1.00 (n=3)" in out and "seeds" in out
    fig = fronts_figure(df, x="size_kb")
    bars = [c for c in fig.axes[0].collections if type(c).__name__ == "LineCollection"]
    assert bars, "no error bars drawn"
    segs = np.concatenate([b.get_segments() for b in bars])
    assert any(abs(s[1][1] - s[0][1] - 2.0) < 1e-9 for s in segs)  # the 98 ± 1 % bar spans 2 points
