"""Result records: schema, atomic write, read, and collection over a nested sweep."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jpq.errors import RunDirError
from jpq.pareto.records import (
    RESULT_COLUMNS,
    ResultReadWarning,
    collect_results,
    fixed_label,
    read_result,
    write_result,
)

EXPECTED_COLUMNS = [
    "dataset", "model", "method", "sampler", "cost", "strength", "seed", "w_bits", "a_bits",
    "warmup_val_acc", "warmup_test_acc", "search_val_acc", "final_val_acc", "final_test_acc",
    "size_bits", "size_kb", "bitops", "mpic_cycles", "mpic_energy_uj", "ne16_cycles",
    "wall_s_warmup", "wall_s_search", "wall_s_finetune", "wall_s_total", "run_dir",
]


def make_record(**over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "dataset": "cifar10", "model": "resnet8", "method": "joint", "sampler": "softmax", "cost": "size",
        "strength": 1e-6, "seed": 14, "w_bits": "0,2,4,8", "a_bits": "2,4,8",
        "warmup_val_acc": 86.0, "warmup_test_acc": 86.1, "search_val_acc": 80.0, "final_val_acc": 84.0,
        "final_test_acc": 84.4, "size_bits": 212_000, "size_kb": 26.5, "bitops": None,
        "mpic_cycles": 3.53e6, "mpic_energy_uj": 3.53e6 / 250e6 * 5.3825e-3 * 1e6, "ne16_cycles": 1.64e5,
        "wall_s_warmup": 10.0, "wall_s_search": 20.0, "wall_s_finetune": 5.0, "wall_s_total": 35.0,
    }
    rec.update(over)
    return rec


def test_columns_are_the_schema_in_order() -> None:
    assert list(RESULT_COLUMNS) == EXPECTED_COLUMNS


def test_write_read_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run1"
    rec = make_record(w_bits=[0, 2, 4, 8], size_kb=np.float32(26.5), seed=np.int64(14),
                      bitops=float("nan"), extra_note="x", temperature_final=0.1)
    write_result(run, rec)
    got = read_result(run)
    assert list(got) == [*EXPECTED_COLUMNS, "extra_note", "temperature_final"]
    assert got["w_bits"] == "0,2,4,8"
    assert got["size_kb"] == 26.5 and isinstance(got["seed"], int) and got["seed"] == 14
    assert got["bitops"] is None  # NaN is written as null: result.json stays strict JSON
    assert got["run_dir"] == str(run)
    json.loads((run / "result.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    assert read_result(run / "result.json") == got

    with open(run / "result.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 2
    assert rows[0] == [*EXPECTED_COLUMNS, "extra_note", "temperature_final"]
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["final_test_acc"] == "84.4" and row["bitops"] == "" and row["w_bits"] == "0,2,4,8"
    assert not list(run.glob("*.tmp"))


def test_missing_keys_are_named(tmp_path: Path) -> None:
    rec = make_record()
    del rec["ne16_cycles"], rec["bitops"]
    with pytest.raises(ValueError, match="bitops, ne16_cycles"):
        write_result(tmp_path / "r", rec)
    assert not (tmp_path / "r" / "result.json").exists()
    with pytest.raises(ValueError, match="scalar"):
        write_result(tmp_path / "r", make_record(model={"name": "resnet8"}))


def test_read_result_errors(tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="cannot read"):
        read_result(tmp_path / "nope")
    (tmp_path / "result.json").write_text('{"dataset": "cif')
    with pytest.raises(RunDirError, match="not valid JSON"):
        read_result(tmp_path)
    (tmp_path / "result.json").write_text("[1, 2]")
    with pytest.raises(RunDirError, match="JSON object"):
        read_result(tmp_path)


def test_collect_nested_sweep(tmp_path: Path) -> None:
    write_result(tmp_path / "joint" / "lam1e-6" / "0", make_record(strength=1e-6, size_kb=26.5))
    write_result(tmp_path / "joint" / "lam1e-5" / "0", make_record(strength=1e-5, size_kb=5.9, new_key=3))
    write_result(tmp_path / "fixed" / "w8", make_record(method="fixed", w_bits=8, a_bits=8, size_kb=77.36,
                                                        mpic_cycles=None))
    write_result(tmp_path / ".cache" / "warmup", make_record(method="hidden"))  # hidden folder: skipped
    broken = tmp_path / "joint" / "crashed"
    broken.mkdir(parents=True)
    (broken / "result.json").write_text('{"dataset": "cifar10", "mod')  # half-written

    moved = tmp_path / "moved"  # a run dir whose stored run_dir is stale still reports its folder
    write_result(moved, make_record(run_dir="/elsewhere/old", strength=1e-7))

    with pytest.warns(ResultReadWarning, match="crashed"):
        df = collect_results(tmp_path)
    assert list(df.columns) == [*EXPECTED_COLUMNS, "new_key"]
    assert len(df) == 4
    assert "hidden" not in set(df["method"])
    assert sorted(df["run_dir"]) == sorted(str(p) for p in [
        tmp_path / "joint" / "lam1e-6" / "0", tmp_path / "joint" / "lam1e-5" / "0",
        tmp_path / "fixed" / "w8", moved,
    ])
    by_dir = df.set_index("run_dir")
    assert by_dir.loc[str(tmp_path / "fixed" / "w8"), "w_bits"] == "8"
    assert math.isnan(by_dir.loc[str(tmp_path / "fixed" / "w8"), "mpic_cycles"])
    assert by_dir.loc[str(tmp_path / "joint" / "lam1e-5" / "0"), "new_key"] == 3
    assert df["size_kb"].dtype.kind == "f" and df["bitops"].dtype.kind == "f"
    assert sorted(df["size_kb"]) == [5.9, 26.5, 26.5, 77.36]


def test_collect_empty_root(tmp_path: Path) -> None:
    df = collect_results(tmp_path)
    assert df.empty and list(df.columns) == EXPECTED_COLUMNS


def test_fixed_label() -> None:
    assert fixed_label("8", "8") == "w8a8"
    assert fixed_label(4, "8") == "w4a8"
    assert fixed_label("2", None) == "w2"
    assert fixed_label(float("nan"), float("nan")) == "fixed"
