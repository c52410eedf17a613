"""``export_run`` on a real finished run (a smoke search on the embedded digits data), and bad folders."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from rich.console import Console

from jpq.errors import RunDirError
from jpq.export import export_run
from jpq.export.export import _resolve_data_dir
from jpq.export.load import load_exported


def test_export_run_writes_and_verifies(run_dir: Path) -> None:
    out = io.StringIO()
    rec = export_run(run_dir, console=Console(file=out, width=120))
    exp = run_dir / "export"
    for name in ("model.pt", "model.onnx", "weights.bin", "manifest.json", "verify.json"):
        assert (exp / name).stat().st_size > 0, name
    assert rec["ok"], rec["checks"]
    result = json.loads((run_dir / "result.json").read_text())
    assert rec["packed_weight_bits"] == round(result["size_bits"]) == rec["size_bits_run"]
    assert rec["packed_weight_bytes_exact"] == pytest.approx(result["size_kb"] * 1000)
    p = rec["predictions"]
    assert p["samples"] == 360  # the digits test split
    assert p["torch_f32"]["agreement"] == 1.0 and p["onnx_f32"]["agreement"] == 1.0
    assert p["torch_f64"]["max_abs_dlogit"] <= 1e-4
    # the fake-quant network rebuilt from the run reproduces the run's reported test accuracy
    assert p["accuracy"]["fake_quant"] == pytest.approx(result["final_test_acc"], abs=1e-6)
    assert p["accuracy"]["torch"] == pytest.approx(result["final_test_acc"], abs=0.6)
    assert json.loads((exp / "verify.json").read_text())["ok"] is True
    arch = json.loads((run_dir / "arch.json").read_text())
    assert [lay["name"] for lay in rec["layers"]] == [lay["name"] for lay in arch["layers"]]
    assert [lay["kept"] for lay in rec["layers"]] == [lay["kept"] for lay in arch["layers"]]
    text = out.getvalue()
    assert "verification" in text and "FAIL" not in text
    model = load_exported(run_dir)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)


def test_export_run_without_prediction_checks(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("export"))
    rec = export_run(copy, verify=False, onnx=False, console=Console(file=io.StringIO()))
    assert rec["ok"] and rec["predictions"] is None
    assert not (copy / "export" / "model.onnx").exists() and (copy / "export" / "weights.bin").is_file()


def test_export_run_bad_folders(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(RunDirError, match="not a folder"):
        export_run(tmp_path / "missing")
    with pytest.raises(RunDirError, match="not a jpq run folder"):
        export_run(tmp_path)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(run_dir, unfinished, ignore=shutil.ignore_patterns("export"))
    (unfinished / "result.json").unlink()
    with pytest.raises(RunDirError, match="no finished fine-tune"):
        export_run(unfinished)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(run_dir, corrupt, ignore=shutil.ignore_patterns("export"))
    (corrupt / "checkpoints" / "final.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunDirError, match="corrupt"):
        export_run(corrupt)
    assert not (corrupt / "export").exists()


def test_relative_data_dir_is_taken_from_the_run_cwd(tmp_path: Path) -> None:
    (tmp_path / "base" / "data").mkdir(parents=True)
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"hydra": {"runtime": {"cwd": str(tmp_path / "base")}}}),
        run / ".hydra" / "hydra.yaml",
    )
    cfg = OmegaConf.create({"data_dir": "data"})
    assert _resolve_data_dir(cfg, run) == str(tmp_path / "base" / "data")
    assert _resolve_data_dir(OmegaConf.create({"data_dir": "/abs/d"}), run) == "/abs/d"
