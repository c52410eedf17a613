"""No file jpq reads back can run code: every reader is fed a crafted pickle whose ``__reduce__`` would
create a marker file, and the marker must never appear (each reader refuses the file in one line)."""

from __future__ import annotations

import pickle
import re
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from jpq.data.cifar10 import read_batch
from jpq.data.download import load_cache
from jpq.errors import ConfigError, DatasetError, RunDirError
from jpq.export.load import load_exported, load_run, run_config
from jpq.export.pit import load_pit_model
from jpq.models.digits import DigitsCNN
from jpq.pipeline import read_init
from jpq.train.cache import cached
from jpq.train.loop import _resumable

ROOT = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this object opens (creates) the marker file: the stand-in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _evil_torch(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    return path


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    m = tmp_path / "PWNED"
    yield m
    assert not m.exists(), "a crafted file ran code"


@pytest.fixture(scope="module")
def pit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished pit_mixprec smoke run (it has every kind of file: phase checkpoints, pit model, final)."""
    from test_cli import SMOKE, jpq

    cwd = tmp_path_factory.mktemp("pitrun")
    jpq("search", *SMOKE, "method=pit_mixprec", f"cache_dir={cwd / 'cache'}", "hydra.run.dir=run", cwd=cwd)
    jpq("export", "run", "--max-samples", "16", "--no-onnx", cwd=cwd)
    return cwd / "run"


def test_the_payload_works(tmp_path: Path) -> None:
    """The control: an unrestricted load of the crafted file does create the marker."""
    m = tmp_path / "PWNED"
    torch.load(_evil_torch(tmp_path / "x.pt", m), weights_only=False)
    assert m.exists()


def test_init_from(tmp_path: Path, marker: Path) -> None:
    with pytest.raises(ConfigError, match="holds Python objects"):
        read_init(str(_evil_torch(tmp_path / "init.pt", marker)))


def test_phase_checkpoint(tmp_path: Path, marker: Path) -> None:
    with pytest.raises(RunDirError, match="corrupt or unreadable"):
        _resumable(_evil_torch(tmp_path / "search_last.pt", marker), "search", "abc")


def test_warmup_cache_entry(tmp_path: Path, marker: Path) -> None:
    def build() -> dict[str, Any]:
        raise AssertionError("a present cache entry must not be rebuilt silently")

    with pytest.raises(RunDirError, match="corrupt"):
        cached(_evil_torch(tmp_path / "warmup-x.pt", marker), build)


def test_dataset_cache(tmp_path: Path, marker: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert load_cache(_evil_torch(tmp_path / "jpq_cache" / "cifar10-x.pt", marker)) is None
    assert any("unreadable dataset cache" in str(w.message) for w in caught)


def test_cifar_batch(marker: Path) -> None:
    with pytest.raises(DatasetError, match="not allowed"):
        read_batch(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}, protocol=2), "data_batch_1")


def test_pit_model(tmp_path: Path, marker: Path) -> None:
    with pytest.raises(RunDirError, match="not a jpq PIT model file"):
        load_pit_model(_evil_torch(tmp_path / "pit_model.pt", marker), DigitsCNN(), torch.zeros(2, 1, 8, 8))


@pytest.mark.parametrize("name", ["checkpoints/final.pt", "checkpoints/pit_model.pt", "export/model.pt"])
def test_run_files(pit_run: Path, tmp_path: Path, marker: Path, name: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(pit_run, run)
    load_exported(run)  # the untouched copy loads
    _evil_torch(run / name, marker)
    with pytest.raises(RunDirError):
        load_exported(run)


def test_pit_model_round_trip(pit_run: Path) -> None:
    """The saved PIT network is tensors and channel counts only, and rebuilds to the run's network."""
    payload = torch.load(pit_run / "checkpoints" / "pit_model.pt", weights_only=True)
    assert set(payload) == {"format", "pit_net", "state_dict", "kept"}
    assert all(isinstance(k, int) and k >= 1 for k in payload["kept"])
    net = load_run(pit_run)  # the mixprec search net built on the rebuilt pruned seed
    assert [g.channels for g in net.groups] == payload["kept"]


def test_run_config_yaml_cannot_build_objects(tmp_path: Path, marker: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(
        f"x: !!python/object/apply:builtins.open ['{marker}', 'w']\n"
    )
    with pytest.raises(Exception, match="(?i)python/object|constructor|tag"):
        run_config(tmp_path)


def test_no_unsafe_loader_in_the_code() -> None:
    """No reader that can run code is used anywhere in jpq."""
    bad = re.compile(
        r"weights_only\s*=\s*False|pickle\.loads?\(|yaml\.(unsafe_)?load\(|allow_pickle\s*=\s*True|jit\.load"
    )
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in sorted((ROOT / "jpq").rglob("*.py"))
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if bad.search(line.split("#")[0]) and "``" not in line
    ]
    assert hits == []


def test_everything_written_loads_as_tensors_only(pit_run: Path) -> None:
    """Every .pt file a run writes (checkpoints, pit model, warmup cache, export) is tensors + plain data."""
    files = sorted(pit_run.rglob("*.pt")) + sorted((pit_run.parent / "cache").rglob("*.pt"))
    names = {p.name for p in files}
    assert {"final.pt", "pit_model.pt", "model.pt"} <= names
    assert any(p.parent.name == "warmup" for p in files)  # the warmup cache entry
    for p in files:
        torch.load(p, map_location="cpu", weights_only=True)
