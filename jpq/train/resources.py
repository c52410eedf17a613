"""What one job of a sweep may use on its node: intra-op threads and the GPU (docs/architecture.md).

Threads: a job's share of the cores it may run on, so that parallel jobs do not oversubscribe them:

1. ``threads=N`` on the command line, else
2. Slurm's ``SLURM_CPUS_PER_TASK``, else
3. ``cores // n_jobs`` under the joblib launcher (``hydra/launcher=joblib hydra.launcher.n_jobs=K``), else
4. every core (PyTorch's default).

GPUs: ``device=cuda:N`` takes GPU N. ``device=cuda`` / ``auto`` on a node with several visible GPUs
takes the lowest-numbered GPU that no other jobs of this node hold: each job holds a lock file per GPU
for its lifetime, so parallel jobs land on distinct GPUs whatever the launcher; with
``CUDA_VISIBLE_DEVICES`` (one GPU per job, as Slurm sets it) the only visible GPU is taken.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout

from jpq.errors import ConfigError

_CUDA_N = re.compile(r"^cuda:(\d+)$")
_held: dict[str, Any] = {}  # the GPU lock this process holds: {"index": int, "lock": FileLock}


def check_device_name(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; a one-line ConfigError otherwise."""
    if name not in ("auto", "cpu", "cuda") and not _CUDA_N.match(name):
        raise ConfigError(f"device={name!r}: choose one of auto, cpu, cuda, cuda:N")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity; os.cpu_count() where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def job_threads(
    threads: int | None, env: dict[str, str], n_jobs: int | None, cores: int
) -> tuple[int, str]:
    """The number of intra-op threads of one job and why (see the module docstring)."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads={threads}: must be >= 1 (or null for the job's share of the cores)")
        return threads, "threads="
    slurm = env.get("SLURM_CPUS_PER_TASK")
    if slurm:
        try:
            return max(1, int(slurm)), "SLURM_CPUS_PER_TASK"
        except ValueError:
            raise ConfigError(f"SLURM_CPUS_PER_TASK={slurm!r} is not a number") from None
    if n_jobs is not None and n_jobs != 1:
        k = cores if n_jobs < 0 else n_jobs  # joblib: -1 = one job per core
        return max(1, cores // max(1, k)), f"joblib n_jobs={n_jobs}"
    return cores, "all cores"


def launcher_n_jobs() -> int | None:
    """``hydra.launcher.n_jobs`` of the running Hydra job (joblib launcher), else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return None
        launcher = HydraConfig.get().launcher
    except Exception:  # noqa: BLE001 - no Hydra context: a plain Python call
        return None
    n = launcher.get("n_jobs") if launcher is not None else None
    return int(n) if n is not None else None


def set_job_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op threads to the job's share; returns (threads, reason) for the log."""
    n, why = job_threads(threads, dict(os.environ), launcher_n_jobs(), available_cores())
    torch.set_num_threads(n)
    return n, why


def _lock_dir() -> Path:
    d = Path(tempfile.gettempdir()) / f"jpq-gpu-locks-{os.getuid() if hasattr(os, 'getuid') else 0}"
    d.mkdir(parents=True, exist_ok=True)
    return d


def claim_gpu(count: int, lock_dir: Path | None = None) -> tuple[int, bool]:
    """The index of a GPU no other job of this node holds, and whether it is this job's alone.

    A process keeps its GPU for its lifetime (the jobs of a sequential sweep reuse it). When every GPU is
    held by other jobs, the one of index ``pid % count`` is shared (returned with False).
    """
    if "index" in _held:
        return int(_held["index"]), True
    d = lock_dir or _lock_dir()
    for i in range(count):
        lock = FileLock(str(d / f"gpu{i}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        _held.update(index=i, lock=lock)
        return i, True
    return os.getpid() % count, False


def release_gpu() -> None:
    """Give this process's GPU lock back (tests; a finished process releases it anyway)."""
    lock = _held.pop("lock", None)
    _held.pop("index", None)
    if lock is not None:
        lock.release()


def resolve_device(name: str) -> tuple[torch.device, str]:
    """The job's device and a line for the log."""
    check_device_name(name)
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu"), "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"device={name} but no CUDA device is available (use device=auto or device=cpu)")
    count = torch.cuda.device_count()
    m = _CUDA_N.match(name)
    if m:
        i = int(m.group(1))
        if i >= count:
            raise ConfigError(
                f"device={name}: this node has {count} visible CUDA device(s), cuda:0..{count - 1}"
            )
        return torch.device("cuda", i), f"{name} (asked for)"
    if count == 1:
        return torch.device("cuda", 0), "cuda:0 (the only visible GPU)"
    i, alone = claim_gpu(count)
    why = f"the first of {count} GPUs free on this node" if alone else f"all {count} GPUs are held, shared"
    return torch.device("cuda", i), f"cuda:{i} ({why})"
