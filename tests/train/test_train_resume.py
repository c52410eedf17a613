"""A sweep job killed with SIGKILL during the search resumes and ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

ARGS = [
    "search",
    "progress=false",
    "deterministic=true",
    "trainer.search_step=eager",  # no kernel compilation in each of the processes
    "strength=2",
    "trainer.warmup.epochs=2",
    "trainer.search.epochs=8",
    "trainer.search.early_stop_start=0",
    "trainer.finetune.epochs=2",
    "trainer.warmup.max_batches=8",
    "trainer.finetune.max_batches=8",
]


def _cmd(run_dir: Path, cache: Path) -> list[str]:
    return [sys.executable, "-m", "jpq.cli", *ARGS, f"hydra.run.dir={run_dir}", f"cache_dir={cache}"]


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


def test_killed_job_resumes_to_the_same_result(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    subprocess.run(
        _cmd(ref_dir, tmp_path / "cache_ref"), check=True, env=env, capture_output=True, cwd=tmp_path
    )

    proc = subprocess.Popen(
        _cmd(run_dir, tmp_path / "cache"),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = run_dir / "checkpoints" / "search_last.pt"
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_epoch = torch.load(marker, weights_only=True)["epoch"]
    assert killed_epoch < 7 and not (run_dir / "result.json").exists()  # killed in the middle of the search

    out = subprocess.run(
        _cmd(run_dir, tmp_path / "cache"), check=True, env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert "cache hit" in out.stderr
    ref = json.loads((ref_dir / "result.json").read_text())
    res = json.loads((run_dir / "result.json").read_text())
    for k in ("final_test_acc", "final_val_acc", "search_val_acc", "size_bits", "ne16_cycles"):
        assert res[k] == ref[k], k
    a, b = _state(ref_dir), _state(run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
