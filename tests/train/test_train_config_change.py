"""A rerun in the same run folder after a config change computes the new config's result: phase
checkpoints written under another config are not resumed, and the warmup cache only ever holds a
warmup trained with its own key."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

BASE = [
    "search",
    "progress=false",
    "deterministic=true",
    "trainer.warmup.epochs=2",
    "trainer.search.epochs=2",
    "trainer.finetune.epochs=1",
    "trainer.warmup.max_batches=4",
    "trainer.search.max_batches=4",
    "trainer.finetune.max_batches=4",
]


def _run(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "jpq.cli", *BASE, *extra, f"hydra.run.dir={run_dir}", f"cache_dir={cache}"]
    return subprocess.run(cmd, check=True, env=env, capture_output=True, text=True, cwd=run_dir.parent)


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def _cache_entries(cache: Path) -> dict[str, dict]:
    return {p.name: torch.load(p, weights_only=True) for p in (cache / "warmup").glob("*.pt")}


def _log(out: subprocess.CompletedProcess[str]) -> str:
    """The log as one line of words, without rich's ``file.py:N`` column."""
    return " ".join(re.sub(r"\s\S+\.py:\d+", " ", out.stderr).split())


def test_rerun_after_strength_change_is_the_new_config(tmp_path: Path) -> None:
    d, cache = tmp_path / "D", tmp_path / "cache"
    _run(d, cache, "strength=0.1")
    out = _run(d, cache, "strength=100", "trainer.search.epochs=3")  # result.json of the old config kept
    assert "was written by a different config" in _log(out) and "running the job again" in _log(out)
    assert "restarting search" in _log(out) and "restarting finetune" in _log(out)
    hist = pd.read_csv(d / "history.csv")
    search = hist[hist.phase == "search"]
    assert list(search.epoch) == [0, 1, 2]  # the new config's 3 epochs, not the old run's 2
    assert set(search.strength) == {100.0}
    # identical to a fresh run of the new config
    fresh = tmp_path / "fresh"
    _run(fresh, tmp_path / "cache_fresh", "strength=100", "trainer.search.epochs=3")
    for k in ("final_test_acc", "final_val_acc", "size_bits", "strength"):
        assert _result(d)[k] == _result(fresh)[k], k


def test_changed_warmup_is_trained_under_its_own_key(tmp_path: Path) -> None:
    d, cache = tmp_path / "D", tmp_path / "cache"
    _run(d, cache, "strength=1")
    (d / "result.json").unlink()
    out = _run(d, cache, "strength=1", "trainer.warmup.optim.lr=0.01")
    assert "restarting warmup" in out.stderr
    entries = _cache_entries(cache)
    assert len(entries) == 2
    # the new key's entry equals the warmup a fresh cache trains with the new settings
    fresh = tmp_path / "fresh"
    _run(fresh, tmp_path / "cache_fresh", "strength=1", "trainer.warmup.optim.lr=0.01")
    (name, ref), = _cache_entries(tmp_path / "cache_fresh").items()
    assert entries[name]["key"] == ref["key"]
    for k, v in ref["state"].items():
        assert torch.equal(entries[name]["state"][k], v), k


def test_resume_is_announced(tmp_path: Path) -> None:
    d, cache = tmp_path / "D", tmp_path / "cache"
    _run(d, cache)
    assert "already finished, skipping" in _log(_run(d, cache))  # same config, result.json kept
    (d / "result.json").unlink()
    out = _run(d, cache)  # same config: every phase is reused, nothing restarts
    assert "restarting" not in out.stderr
    assert "search: finished earlier with the same config" in out.stderr
