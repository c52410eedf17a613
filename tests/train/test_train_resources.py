"""A job's share of the node: intra-op threads and a GPU of its own (jpq.train.resources).

CUDA is faked (``torch.cuda.is_available`` / ``device_count`` patched): device selection never touches a GPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from filelock import FileLock

from jpq.errors import ConfigError
from jpq.train import resources
from jpq.train.resources import job_threads, resolve_device


@pytest.mark.parametrize(
    "threads,env,n_jobs,cores,expected",
    [
        (3, {"SLURM_CPUS_PER_TASK": "8"}, 2, 16, (3, "threads=")),  # the override wins
        (None, {"SLURM_CPUS_PER_TASK": "8"}, 2, 16, (8, "SLURM_CPUS_PER_TASK")),
        (None, {}, 2, 2, (1, "joblib n_jobs=2")),
        (None, {}, 3, 16, (5, "joblib n_jobs=3")),
        (None, {}, -1, 4, (1, "joblib n_jobs=-1")),  # one job per core
        (None, {}, 4, 2, (1, "joblib n_jobs=4")),  # never 0
        (None, {}, None, 2, (2, "all cores")),
        (None, {}, 1, 2, (2, "all cores")),
    ],
)
def test_job_threads(threads, env, n_jobs, cores, expected) -> None:  # type: ignore[no-untyped-def]
    assert job_threads(threads, env, n_jobs, cores) == expected


def test_bad_thread_counts_are_refused() -> None:
    with pytest.raises(ConfigError, match="threads=0: must be >= 1"):
        job_threads(0, {}, None, 2)
    with pytest.raises(ConfigError, match="SLURM_CPUS_PER_TASK='x' is not a number"):
        job_threads(None, {"SLURM_CPUS_PER_TASK": "x"}, None, 2)


def test_set_job_threads_sets_torch() -> None:
    before = torch.get_num_threads()
    try:
        assert resources.set_job_threads(1) == (1, "threads=")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(resources, "_lock_dir", lambda: tmp_path)
    resources.release_gpu()
    yield tmp_path
    resources.release_gpu()


def test_cuda_n_is_accepted_and_checked(two_gpus: Path) -> None:
    assert resolve_device("cuda:1") == (torch.device("cuda", 1), "cuda:1 (asked for)")
    with pytest.raises(ConfigError, match="has 2 visible CUDA device"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="choose one of auto, cpu, cuda, cuda:N"):
        resolve_device("gpu1")
    assert resolve_device("cpu")[0] == torch.device("cpu")


def test_parallel_jobs_take_distinct_gpus(two_gpus: Path) -> None:
    other = FileLock(str(two_gpus / "gpu0.lock"))  # another job of the node holds GPU 0
    other.acquire(timeout=0)
    try:
        dev, why = resolve_device("cuda")
        assert dev == torch.device("cuda", 1) and "first of 2 GPUs free" in why
        assert resolve_device("auto")[0] == torch.device("cuda", 1)  # the process keeps its GPU
    finally:
        other.release()


def test_first_job_takes_gpu0_and_a_full_node_shares(two_gpus: Path) -> None:
    assert resolve_device("auto")[0] == torch.device("cuda", 0)
    resources.release_gpu()
    held = [FileLock(str(two_gpus / f"gpu{i}.lock")) for i in range(2)]
    for lock in held:
        lock.acquire(timeout=0)
    try:
        dev, why = resolve_device("cuda")
        assert dev.type == "cuda" and dev.index in (0, 1) and "all 2 GPUs are held, shared" in why
    finally:
        for lock in held:
            lock.release()


def test_no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == (torch.device("cpu"), "cpu")
    with pytest.raises(ConfigError, match="no CUDA device is available"):
        resolve_device("cuda:0")
