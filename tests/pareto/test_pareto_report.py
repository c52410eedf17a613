"""The Pareto report on a tiny synthetic sweep with the CIFAR-10 figure numbers (docs/method.md §9)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from jpq.errors import ConfigError, RunDirError
from jpq.pareto.records import RESULT_COLUMNS, ResultReadWarning, write_result
from jpq.pareto.report import front_summary, pareto_report

# (size_kb, accuracy %, mpic_cycles, ne16_cycles), values read from the paper figures (docs/method.md §9)
JOINT = [(2.9, 62.0, 0.18e6, 0.53e5), (5.9, 72.8, 0.30e6, 0.80e5), (15.3, 81.9, 1.36e6, 1.12e5),
         (26.5, 84.4, 3.53e6, 1.64e5), (59.0, 86.2, 5.03e6, 1.86e5),
         (30.0, 80.0, 2.00e6, 1.00e5)]  # the last one is dominated in size
MIXPREC = [(19.6, 74.0, 1.0e6, 0.9e5), (20.3, 77.8, 1.1e6, 0.95e5), (21.7, 79.0, 1.2e6, 1.0e5),
           (33.0, 85.0, 3.0e6, 1.3e5), (57.8, 85.8, 4.5e6, 1.5e5), (76.0, 86.9, 5.9e6, 1.6e5)]
FIXED = {"8": (77.3, 86.3, 5.95e6, 1.55e5), "4": (38.7, 85.4, 5.44e6, 1.04e5),
         "2": (19.4, 71.8, 5.00e6, 0.79e5)}


def _record(method: str, point: tuple[float, float, float, float], **over: Any) -> dict[str, Any]:
    size_kb, acc, mpic, ne16 = point
    rec: dict[str, Any] = {
        "dataset": "cifar10", "model": "resnet8", "method": method, "sampler": "softmax", "cost": "size",
        "strength": 1e-6, "seed": 14, "w_bits": "0,2,4,8", "a_bits": "2,4,8",
        "warmup_val_acc": 86.0, "warmup_test_acc": 86.1, "search_val_acc": acc - 1,
        "final_val_acc": acc - 0.5,
        "final_test_acc": acc, "size_bits": size_kb * 8000, "size_kb": size_kb, "bitops": None,
        "mpic_cycles": mpic, "mpic_energy_uj": mpic / 250e6 * 5.3825e-3 * 1e6, "ne16_cycles": ne16,
        "wall_s_warmup": 1.0, "wall_s_search": 2.0, "wall_s_finetune": 1.0, "wall_s_total": 4.0,
    }
    rec.update(over)
    return rec


def make_sweep(root: Path) -> None:
    for i, p in enumerate(JOINT):
        write_result(root / "joint" / f"s{i}", _record("joint", p, strength=10.0 ** (-i)))
    for i, p in enumerate(MIXPREC):
        write_result(root / "mixprec" / "nested" / f"s{i}", _record("mixprec", p, w_bits="2,4,8"))
    for w, p in FIXED.items():
        write_result(root / "fixed" / f"w{w}a8", _record("fixed", p, w_bits=w, a_bits="8", strength=0.0))
    write_result(root / ".cache" / "warm", _record("joint", (0.1, 99.0, 1.0, 1.0)))  # hidden: ignored


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=250, color_system=None), buf


def test_report_writes_csv_figures_and_headline_numbers(tmp_path: Path) -> None:
    make_sweep(tmp_path)
    (tmp_path / "joint" / "killed").mkdir()
    (tmp_path / "joint" / "killed" / "result.json").write_text('{"dataset": "cifar10", "size_')
    console, buf = _console()
    with pytest.warns(ResultReadWarning, match="killed"):
        df = pareto_report(tmp_path, console=console)

    for name in ("pareto.csv", "pareto.png", "pareto_size_kb.png", "pareto_mpic_cycles.png",
                 "pareto_ne16_cycles.png", "pareto_summary.csv"):
        assert (tmp_path / name).is_file(), name
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "pareto_bitops.png").exists()  # no run measured BitOps
    assert (tmp_path / "pareto.png").read_bytes() == (tmp_path / "pareto_size_kb.png").read_bytes()

    csv = pd.read_csv(tmp_path / "pareto.csv")
    assert list(csv.columns) == [*RESULT_COLUMNS, "n_seeds", "seeds", "on_front"]  # one seed per point
    assert len(csv) == len(df) == 15
    assert csv.groupby("method")["on_front"].sum().to_dict() == {"fixed": 3, "joint": 5, "mixprec": 6}
    off = csv[~csv["on_front"]]
    assert off[["method", "size_kb"]].values.tolist() == [["joint", 30.0]]
    assert df["on_front"].tolist() == csv["on_front"].tolist()

    summary = pd.read_csv(tmp_path / "pareto_summary.csv").set_index("group")
    assert list(summary.index) == ["joint", "mixprec", "fixed"]
    assert summary.loc["joint", "best_fixed"] == "w8a8"
    assert summary.loc["joint", "reduction_vs_w2a8_pct"] == pytest.approx(100 * (1 - 5.9 / 19.4))  # 69.59
    assert summary.loc["joint", "reduction_vs_w4a8_pct"] == pytest.approx(100 * (1 - 59.0 / 38.7))
    assert math.isnan(summary.loc["joint", "reduction_vs_w8a8_pct"])  # 86.2 % never reaches 86.3 %
    assert math.isnan(summary.loc["joint", "reduction_vs_best_fixed_pct"])
    assert summary.loc["mixprec", "reduction_vs_best_fixed_pct"] == pytest.approx(100 * (1 - 76.0 / 77.3))
    assert summary.loc["mixprec", "reduction_vs_w2a8_pct"] == pytest.approx(100 * (1 - 19.6 / 19.4))
    hv_joint = (3.0 * 62.0 + 9.4 * 72.8 + 11.2 * 81.9 + 32.5 * 84.4 + 18.3 * 86.2) / 77.3
    assert summary.loc["joint", "hypervolume"] == pytest.approx(hv_joint)
    assert summary.loc["fixed", "hypervolume"] == pytest.approx(
        ((38.7 - 19.4) * 71.8 + (77.3 - 38.7) * 85.4) / 77.3)
    assert summary.loc[["joint", "mixprec", "fixed"], "n_points"].tolist() == [6, 6, 3]

    out = buf.getvalue()
    assert "Pareto front: method = joint" in out and "fixed-precision baselines" in out
    assert "+69.59 %" in out and "+1.68 %" in out and "vs w8a8" in out
    assert "joint/s1" in out  # run dirs shown relative to the root
    assert "warning:" in out and "killed" in out


def test_report_single_metric(tmp_path: Path) -> None:
    make_sweep(tmp_path)
    console, _ = _console()
    df = pareto_report(tmp_path, x="ne16_cycles", group_by="method", console=console)
    assert (tmp_path / "pareto.png").is_file()
    assert not list(tmp_path.glob("pareto_*.png"))
    # by NE16 cycles the run dominated in size (30 kB, 80 %) costs 1.00e5 cycles, between the 72.8 % run
    # (0.80e5) and the 81.9 % run (1.12e5): nobody is cheaper and more accurate, so all joint runs are on it
    joint = df[df["method"] == "joint"].set_index("size_kb")["on_front"].to_dict()
    assert joint == {2.9: True, 5.9: True, 30.0: True, 15.3: True, 26.5: True, 59.0: True}
    mix = df[df["method"] == "mixprec"].set_index("size_kb")["on_front"].to_dict()
    assert all(mix.values())
    summary = front_summary(df, x="ne16_cycles").set_index("group")
    # joint vs w2a8 by NE16 cycles: cheapest joint run with >= 71.8 % costs 0.80e5 vs 0.79e5
    assert summary.loc["joint", "reduction_vs_w2a8_pct"] == pytest.approx(100 * (1 - 0.80e5 / 0.79e5))


def test_report_errors(tmp_path: Path) -> None:
    console, _ = _console()
    with pytest.raises(RunDirError, match="does not exist"):
        pareto_report(tmp_path / "missing", console=console)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(RunDirError, match="no readable result.json"):
        pareto_report(tmp_path / "empty", console=console)
    make_sweep(tmp_path / "sweep")
    with pytest.raises(ConfigError, match=r"unknown x column 'size'.*size_kb"):
        pareto_report(tmp_path / "sweep", x="size", console=console)
    with pytest.raises(ConfigError, match=r"unknown x column 'dataset'"):
        pareto_report(tmp_path / "sweep", x="dataset", console=console)
    with pytest.raises(ConfigError, match=r"no result .* 'bitops'"):
        pareto_report(tmp_path / "sweep", x="bitops", console=console)
    with pytest.raises(ConfigError, match=r"unknown y column 'acc'.*final_test_acc"):
        pareto_report(tmp_path / "sweep", y="acc", console=console)
    with pytest.raises(ConfigError, match=r"unknown group_by column 'methods'.*method"):
        pareto_report(tmp_path / "sweep", group_by="methods", console=console)
    assert not (tmp_path / "sweep" / "pareto.csv").exists()  # nothing written on a bad request


# the paper's PIT + MixPrec front on CIFAR-10 (size_kb, accuracy %), docs/method.md §9
SEQUENTIAL = [(8.8, 66.7), (9.6, 75.8), (13.1, 79.0), (20.0, 83.6), (22.2, 84.2), (33.4, 85.1)]


def test_summary_compares_with_the_sequential_baseline(tmp_path: Path) -> None:
    make_sweep(tmp_path)
    for i, (kb, acc) in enumerate(SEQUENTIAL):
        write_result(tmp_path / "seq" / f"s{i}",
                     _record("pit_mixprec", (kb, acc, 1e6, 1e5), w_bits="2,4,8"))
    console, buf = _console()
    pareto_report(tmp_path, console=console)
    summary = pd.read_csv(tmp_path / "pareto_summary.csv").set_index("group")
    # best case for joint: 5.9 kB reaches the 66.7 % of the 8.8 kB sequential point
    assert summary.loc["joint", "reduction_vs_pit_mixprec_pct"] == pytest.approx(100 * (1 - 5.9 / 8.8))
    # mixprec never beats it: its best case is 33.0 kB against the 22.2 kB / 84.2 % point
    assert summary.loc["mixprec", "reduction_vs_pit_mixprec_pct"] == pytest.approx(100 * (1 - 33.0 / 22.2))
    assert math.isnan(summary.loc["pit_mixprec", "reduction_vs_pit_mixprec_pct"])
    assert math.isnan(summary.loc["fixed", "reduction_vs_pit_mixprec_pct"])
    assert "vs pit_mixprec (up to)" in buf.getvalue() and "+32.95 %" in buf.getvalue()
    # without the sequential baseline there is no such column
    assert "reduction_vs_pit_mixprec_pct" not in front_summary(
        pd.read_csv(tmp_path / "pareto.csv").query("method != 'pit_mixprec'"), x="size_kb").columns
