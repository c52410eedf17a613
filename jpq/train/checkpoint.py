"""The phase checkpoint ``<phase>_last.pt``: what :func:`jpq.train.loop.fit` needs to continue a phase.

After every epoch it holds the model, optimizers, schedulers, both random generators, the
early-stopping state and the history (:func:`save_progress`); once the phase is done, only the final
model and the phase result, marked finished (:func:`save_finished`). Both carry the hash of the config
that determines the phase, which the loop compares before it resumes (:func:`restore`). Files are
written atomically and read with ``weights_only`` (:func:`load`: nothing in them runs code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jpq.errors import RunDirError
from jpq.io import atomic_torch_save, load_tensors


@dataclass
class LoopState:
    """Where a phase stands between epochs (restored from the checkpoint on a resume)."""

    start: int = 0  # the first epoch still to run
    history: list[dict[str, Any]] = field(default_factory=list)
    best_state: dict[str, Any] | None = None
    best_epoch: int = -1
    best_val: float | None = None
    counter: int = 0  # epochs without improvement (patience)
    wall_before: float = 0.0  # seconds spent before a resume
    epoch: int = -1  # the last epoch run
    stopped: bool = False


def restore(
    ck: dict[str, Any],
    optimizers: list[tuple[torch.optim.Optimizer, Any]],
    gen: torch.Generator,
) -> LoopState:
    """Restore the optimizers, schedulers and both random generators from the checkpoint ``ck`` of an
    interrupted phase (the model is loaded by the caller); returns the state to continue from."""
    for (opt, sch), so, ss in zip(optimizers, ck["optimizers"], ck["schedulers"], strict=True):
        opt.load_state_dict(so)
        if sch is not None and ss is not None:
            sch.load_state_dict(ss)
    gen.set_state(ck["gen"])
    torch.set_rng_state(ck["rng"])
    return LoopState(
        start=ck["epoch"] + 1,
        history=ck["history"],
        best_state=ck["best_state"],
        best_epoch=ck["best_epoch"],
        best_val=ck["best_val"],
        counter=ck["counter"],
        wall_before=ck["wall_s"],
        epoch=ck["epoch"],
    )


def save_progress(
    path: Path,
    st: LoopState,
    model: nn.Module,
    optimizers: list[tuple[torch.optim.Optimizer, Any]],
    gen: torch.Generator,
    *,
    wall_s: float,
    config_hash: str | None,
) -> None:
    """Write everything a resume after epoch ``st.epoch`` needs."""
    atomic_torch_save(
        path,
        {
            "epoch": st.epoch,
            "model": model.state_dict(),
            "optimizers": [o.state_dict() for o, _ in optimizers],
            "schedulers": [None if s is None else s.state_dict() for _, s in optimizers],
            "gen": gen.get_state(),
            "rng": torch.get_rng_state(),
            "history": st.history,
            "counter": st.counter,
            "best_state": st.best_state,
            "best_epoch": st.best_epoch,
            "best_val": st.best_val,
            "wall_s": wall_s,
            "config_hash": config_hash,
        },
    )


def save_finished(path: Path, model: nn.Module, result: dict[str, Any], config_hash: str | None) -> None:
    """Mark the phase finished: its final model and result, so that a rerun skips it."""
    atomic_torch_save(
        path,
        {
            "finished": True,
            "model": model.state_dict(),
            "result": result,
            "config_hash": config_hash,
        },
    )


def load(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``; :class:`RunDirError` if it is not plain tensors and containers."""
    try:
        return load_tensors(path)
    except ValueError as e:
        raise RunDirError(f"checkpoint {path} is unreadable: {e}; delete it to restart the phase") from e
