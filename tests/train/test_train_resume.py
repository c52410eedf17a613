"""A job killed with SIGKILL in any phase (warmup, PIT, search, fine-tune) resumes and ends exactly like an
uninterrupted run (deterministic mode)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ARGS = [
    "search",
    "progress=false",
    "deterministic=true",
    "strength=2",
    "trainer.warmup.epochs=6",
    "trainer.search.epochs=8",
    "trainer.search.early_stop_start=0",
    "trainer.finetune.epochs=6",
    "trainer.warmup.max_batches=8",
    "trainer.finetune.max_batches=8",
]
METHOD = {"warmup": "joint", "search": "joint", "finetune": "joint", "pit_search": "pit_mixprec"}
EPOCHS = {"warmup": 6, "search": 8, "finetune": 6, "pit_search": 8}


def _cmd(run_dir: Path, cache: Path, method: str = "joint") -> list[str]:
    return [
        sys.executable,
        "-m",
        "jpq.cli",
        *ARGS,
        f"method={method}",
        f"hydra.run.dir={run_dir}",
        f"cache_dir={cache}",
    ]


def _state(run_dir: Path) -> dict[str, torch.Tensor]:
    sd = torch.load(run_dir / "checkpoints" / "final.pt", weights_only=True)["state_dict"]
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One uninterrupted run per method, shared by the kill cases."""
    root = tmp_path_factory.mktemp("ref")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = {}
    for method in sorted(set(METHOD.values())):
        out[method] = root / method
        subprocess.run(
            _cmd(out[method], root / "cache", method), check=True, env=env, capture_output=True, cwd=root
        )
    return out


@pytest.mark.parametrize("phase", list(METHOD))
def test_killed_job_resumes_to_the_same_result(
    phase: str, reference: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    method, run_dir = METHOD[phase], tmp_path / "run"
    proc = subprocess.Popen(
        _cmd(run_dir, tmp_path / "cache", method),
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = run_dir / "checkpoints" / f"{phase}_last.pt"
    deadline = time.time() + 300
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the job ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_epoch = torch.load(marker, weights_only=True)["epoch"]
    assert killed_epoch < EPOCHS[phase] - 1 and not (run_dir / "result.json").exists()  # killed mid-phase

    out = subprocess.run(
        _cmd(run_dir, tmp_path / "cache", method),
        check=True,
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert f"resuming {phase} from epoch {killed_epoch + 1}" in " ".join(out.stderr.split())
    ref_dir = reference[method]
    ref = json.loads((ref_dir / "result.json").read_text())
    res = json.loads((run_dir / "result.json").read_text())
    for k in ("final_test_acc", "final_val_acc", "search_val_acc", "size_bits", "ne16_cycles"):
        assert res[k] == ref[k], k
    a, b = _state(ref_dir), _state(run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
