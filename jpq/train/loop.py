"""ONE fit/evaluate loop for every phase: warmup, search and fine-tune (algorithm.md §6.1).

Per epoch: train on shuffled batches (weights and, in the search, alphas stepped on the same batch by
their own optimizers), evaluate the validation split in eval mode (argmax theta in the search, so the
metric is the discretised network's), keep the best-validation state (strict improvement, only from
``early_stop_start`` on), count patience, step the LR schedules, then call ``on_epoch_end`` (temperature
annealing). The test split is evaluated once, at the end, on the best state.

Interruption safety: after every epoch ``<phase>_last.pt`` holds everything needed to continue
(model, optimizers, schedulers, RNG states, early-stopping state, history); a finished phase is
marked so that a rerun skips it. Files are written atomically.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress
from torch import Tensor, nn

from jpq.data.base import DataBundle, Split, batches, num_batches
from jpq.errors import RunDirError
from jpq.io import atomic_torch_save, load_tensors

MONITORS = ("val_acc", "val_loss")
_console = Console(stderr=True)


class CostTerm(Protocol):
    """The regularizer of the search loss: ``strength(epoch) * cost`` (normalised cost, §6.1)."""

    def strength_at(self, epoch: int) -> float: ...

    def __call__(self, *, fresh: bool = False) -> Tensor: ...


@dataclass
class PhaseSpec:
    """How long and how one phase trains."""

    name: str
    epochs: int
    batch_size: int = 32
    eval_batch_size: int = 256
    patience: int = 50
    early_stop_start: int = -1  # -1: 20 if epochs > 20 else 0 (the paper scripts' rule)
    monitor: str = "val_acc"
    max_batches: int | None = None  # cap per epoch (smoke runs)

    def start_epoch(self) -> int:
        if self.early_stop_start >= 0:
            return self.early_stop_start
        return 21 if self.epochs > 20 else 0


@dataclass
class FitResult:
    phase: str
    history: list[dict[str, Any]]
    best_epoch: int
    val_acc: float
    val_loss: float
    test_acc: float
    test_loss: float
    extra_test_acc: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False


def _criterion(weights: Tensor | None) -> Callable[[Tensor, Tensor], Tensor]:
    return lambda out, y: F.cross_entropy(out, y, weight=weights)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    split: Split,
    batch_size: int,
    *,
    class_weights: Tensor | None = None,
    augment: Any = None,
    seed: int = 0,
    max_batches: int | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy (percent) of ``model`` in eval mode on ``split``."""
    was_training = model.training
    model.eval()
    crit = _criterion(class_weights)
    sums = torch.zeros(3, device=split.x.device)  # weighted loss, weight, correct (one sync at the end)
    total = 0
    gen = torch.Generator().manual_seed(seed) if augment is not None else None
    for x, y in batches(split, batch_size, augment=augment, generator=gen, max_batches=max_batches):
        out = model(x)
        w = y.new_tensor(y.shape[0], dtype=out.dtype) if class_weights is None else class_weights[y].sum()
        sums[0] += crit(out, y) * w
        sums[1] += w
        sums[2] += (out.argmax(1) == y).sum()
        total += int(y.shape[0])
    model.train(was_training)
    if total == 0:
        return math.nan, math.nan
    loss_sum, wsum, correct = sums.tolist()
    return loss_sum / wsum, 100.0 * correct / total


def fit(
    model: nn.Module,
    data: DataBundle,
    phase: PhaseSpec,
    optimizers: list[tuple[torch.optim.Optimizer, Any]],
    *,
    seed: int,
    cost_term: CostTerm | None = None,
    on_epoch_end: Callable[[int], dict[str, float]] | None = None,
    ckpt_dir: Path | None = None,
    progress: Progress | None = None,
    config_hash: str | None = None,
) -> FitResult:
    """Train ``model`` for one phase; returns the phase result with ``model`` holding the best state.

    ``config_hash`` identifies the settings that determine this phase: it is stored in the phase's
    checkpoint, and a checkpoint written under another hash is never resumed (the phase restarts), so a
    rerun after a config change cannot continue the old run's training.
    """
    t0 = time.perf_counter()
    crit = _criterion(data.class_weights)
    gen = torch.Generator().manual_seed(seed)
    val_aug = data.augment if data.augment_val else None
    last_path = ckpt_dir / f"{phase.name}_last.pt" if ckpt_dir else None
    best_path = ckpt_dir / f"{phase.name}_best.pt" if ckpt_dir else None

    start, history, best_state, best_epoch, best_val, counter = 0, [], None, -1, None, 0
    wall_before = 0.0
    # every phase starts from its own seed, so it draws the same random numbers whether the phases
    # before it were trained in this process, loaded from the warmup cache, or resumed
    torch.manual_seed(seed)
    ck = _resumable(last_path, phase.name, config_hash)
    if ck is not None:
        model.load_state_dict(ck["model"])
        if ck.get("finished"):
            _console.log(f"{phase.name}: finished earlier with the same config, reusing it")
            return FitResult(**ck["result"])
        _console.log(f"resuming {phase.name} from epoch {ck['epoch'] + 1}")
        for (opt, sch), so, ss in zip(optimizers, ck["optimizers"], ck["schedulers"], strict=True):
            opt.load_state_dict(so)
            if sch is not None and ss is not None:
                sch.load_state_dict(ss)
        gen.set_state(ck["gen"])
        torch.set_rng_state(ck["rng"])
        start, history, counter = ck["epoch"] + 1, ck["history"], ck["counter"]
        best_state, best_epoch, best_val = ck["best_state"], ck["best_epoch"], ck["best_val"]
        wall_before = ck["wall_s"]

    n_b = num_batches(data.train, phase.batch_size, phase.max_batches)
    ep_task = progress.add_task(f"{phase.name}", total=phase.epochs, completed=start) if progress else None
    b_task = progress.add_task("  batches", total=n_b) if progress else None
    stopped = False
    epoch = start - 1
    for epoch in range(start, phase.epochs):
        model.train()
        te = time.perf_counter()
        # running sums stay on the device: one host sync per epoch, not three per step
        sums = torch.zeros(3, device=data.train.x.device)  # loss * batch, correct, cost
        tn = 0
        strength = cost_term.strength_at(epoch) if cost_term is not None else 0.0
        if progress:
            progress.reset(b_task, total=n_b)
        for x, y in batches(
            data.train,
            phase.batch_size,
            shuffle=True,
            generator=gen,
            augment=data.augment,
            max_batches=phase.max_batches,
        ):
            out = model(x)
            loss = crit(out, y)
            if cost_term is not None:
                c = cost_term()
                sums[2] += c.detach()
                if strength != 0.0:
                    loss = loss + strength * c
            for opt, _ in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt, _ in optimizers:
                opt.step()
            bs = int(y.shape[0])
            sums[0] += loss.detach() * bs
            sums[1] += (out.detach().argmax(1) == y).sum()
            tn += bs
            if progress:
                progress.advance(b_task)
        tl, tc, cost_sum = sums.tolist()
        if not math.isfinite(tl):
            raise FloatingPointError(f"{phase.name}: the training loss became {tl} at epoch {epoch}")
        val_loss, val_acc = evaluate(
            model,
            data.val,
            phase.eval_batch_size,
            class_weights=data.class_weights,
            augment=val_aug,
            seed=seed + epoch,
            max_batches=phase.max_batches,
        )
        row: dict[str, Any] = {
            "phase": phase.name,
            "epoch": epoch,
            "lr": optimizers[0][0].param_groups[0]["lr"],
            "train_loss": tl / max(tn, 1),
            "train_acc": 100.0 * tc / max(tn, 1),
            "val_loss": val_loss,
            "val_acc": val_acc,
        }
        if cost_term is not None:
            with torch.no_grad():
                disc = float(cost_term(fresh=True))
            row.update(strength=strength, expected_cost=cost_sum / max(n_b, 1), discrete_cost=disc)
            val_loss += strength * disc  # the search's validation loss includes lambda * Cost (§6.1, KWS)
            row["val_loss"] = val_loss
        metric = val_acc if phase.monitor == "val_acc" else -val_loss
        # before the start epoch the latest state is kept provisionally; from it on, the first call
        # always saves and later ones only on strict improvement (§6.1)
        provisional = epoch < phase.start_epoch()
        if provisional or best_epoch < phase.start_epoch() or best_val is None or metric > best_val:
            best_val, best_epoch = metric, epoch
            counter = 0
            best_state = copy.deepcopy(model.state_dict())
            if best_path is not None:
                atomic_torch_save(best_path, best_state)
        else:
            counter += 1
        for _, sch in optimizers:
            if sch is not None:
                sch.step()
        if on_epoch_end is not None:
            row.update(on_epoch_end(epoch))
        row["wall_s"] = time.perf_counter() - te
        history.append(row)
        stopped = counter >= phase.patience
        if last_path is not None:
            atomic_torch_save(
                last_path,
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizers": [o.state_dict() for o, _ in optimizers],
                    "schedulers": [None if s is None else s.state_dict() for _, s in optimizers],
                    "gen": gen.get_state(),
                    "rng": torch.get_rng_state(),
                    "history": history,
                    "counter": counter,
                    "best_state": best_state,
                    "best_epoch": best_epoch,
                    "best_val": best_val,
                    "wall_s": wall_before + time.perf_counter() - t0,
                    "config_hash": config_hash,
                },
            )
        if progress:
            progress.update(ep_task, advance=1, description=f"{phase.name} val_acc={val_acc:.1f}")
        if stopped:
            break
    if progress:
        progress.remove_task(b_task)
        progress.update(ep_task, completed=phase.epochs)

    if best_state is not None:
        model.load_state_dict(best_state)
    best_row = next((r for r in history if r["epoch"] == best_epoch), {})
    test_loss, test_acc = evaluate(
        model,
        data.test,
        phase.eval_batch_size,
        class_weights=data.class_weights,
        max_batches=phase.max_batches,
    )
    extra = {
        k: evaluate(model, s, phase.eval_batch_size, max_batches=phase.max_batches)[1]
        for k, s in data.extra_test.items()
    }
    result = FitResult(
        phase=phase.name,
        history=history,
        best_epoch=best_epoch,
        val_acc=float(best_row.get("val_acc", math.nan)),
        val_loss=float(best_row.get("val_loss", math.nan)),
        test_acc=test_acc,
        test_loss=test_loss,
        extra_test_acc=extra,
        wall_s=wall_before + time.perf_counter() - t0,
        epochs_run=epoch + 1,
        stopped_early=stopped,
    )
    if last_path is not None:
        atomic_torch_save(
            last_path,
            {
                "finished": True,
                "model": model.state_dict(),
                "result": asdict(result),
                "config_hash": config_hash,
            },
        )
    return result


def _resumable(path: Path | None, phase: str, config_hash: str | None) -> dict[str, Any] | None:
    """The phase checkpoint at ``path`` if it was written under ``config_hash``; None (restart) if there
    is none or it belongs to another config, which one line says."""
    if path is None or not path.exists():
        return None
    ck = _load(path)
    if ck.get("config_hash") != config_hash:
        _console.log(
            f"{phase}: {path} was written by a different config (hash {ck.get('config_hash')}, "
            f"now {config_hash}); restarting {phase} from epoch 0"
        )
        return None
    return ck


def _load(path: Path) -> dict[str, Any]:
    try:
        return load_tensors(path)
    except ValueError as e:
        raise RunDirError(f"checkpoint {path} is unreadable: {e}; delete it to restart the phase") from e
