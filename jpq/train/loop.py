"""ONE fit/evaluate loop for every phase: warmup, search and fine-tune (docs/method.md §6.1).

:func:`fit` is a sequence of named steps:

1. :func:`_resume` - continue from the phase checkpoint written under the same config, or start
   fresh; a finished phase is not retrained, its stored result is returned;
2. one epoch (:func:`_run_epoch`): :func:`_train_epoch` on shuffled batches (weights and, in the
   search, alphas stepped on the same batch by their own optimizers), :func:`_validate` in eval mode
   (argmax theta in the search, so the metric is the discretised network's), :func:`_select` the
   best-validation state (strict improvement, only from ``early_stop_start`` on) and count patience,
   step the LR schedules, then call ``on_epoch_end`` (temperature annealing);
3. save - after every epoch ``<phase>_last.pt`` holds everything needed to continue (model,
   optimizers, schedulers, RNG states, early-stopping state, history; :mod:`jpq.train.checkpoint`);
4. :func:`_finish` - the test split is evaluated once, at the end, on the best state, and the phase
   is marked finished so that a rerun skips it.
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
from rich.progress import Progress, TaskID
from torch import Tensor, nn

from jpq.data.base import DataBundle, Split, batches, num_batches
from jpq.io import atomic_torch_save
from jpq.train.checkpoint import LoopState, load, restore, save_finished, save_progress

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


@dataclass
class _Run:
    """What one :func:`fit` call works with; fixed for the whole phase."""

    model: nn.Module
    data: DataBundle
    phase: PhaseSpec
    optimizers: list[tuple[torch.optim.Optimizer, Any]]
    seed: int
    cost_term: CostTerm | None
    on_epoch_end: Callable[[int], dict[str, float]] | None
    config_hash: str | None
    last_path: Path | None
    best_path: Path | None
    t0: float
    crit: Callable[[Tensor, Tensor], Tensor]
    gen: torch.Generator


class _Bars:
    """The epoch and batch progress bars of a phase; every call is a no-op without ``progress``."""

    def __init__(self, progress: Progress | None, phase: PhaseSpec, n_batches: int, start: int) -> None:
        self.progress, self.phase, self.n_batches = progress, phase, n_batches
        self.epochs, self.batches = TaskID(-1), TaskID(-1)
        if progress:
            self.epochs = progress.add_task(f"{phase.name}", total=phase.epochs, completed=start)
            self.batches = progress.add_task("  batches", total=n_batches)

    def new_epoch(self) -> None:
        if self.progress:
            self.progress.reset(self.batches, total=self.n_batches)

    def batch_done(self) -> None:
        if self.progress:
            self.progress.advance(self.batches)

    def epoch_done(self, val_acc: float) -> None:
        if self.progress:
            description = f"{self.phase.name} val_acc={val_acc:.1f}"
            self.progress.update(self.epochs, advance=1, description=description)

    def close(self) -> None:
        if self.progress:
            self.progress.remove_task(self.batches)
            self.progress.update(self.epochs, completed=self.phase.epochs)


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
    run = _Run(
        model=model,
        data=data,
        phase=phase,
        optimizers=optimizers,
        seed=seed,
        cost_term=cost_term,
        on_epoch_end=on_epoch_end,
        config_hash=config_hash,
        last_path=ckpt_dir / f"{phase.name}_last.pt" if ckpt_dir else None,
        best_path=ckpt_dir / f"{phase.name}_best.pt" if ckpt_dir else None,
        t0=time.perf_counter(),
        crit=_criterion(data.class_weights),
        gen=torch.Generator().manual_seed(seed),
    )
    # every phase starts from its own seed, so it draws the same random numbers whether the phases
    # before it were trained in this process, loaded from the warmup cache, or resumed
    torch.manual_seed(seed)
    st = _resume(run)
    if isinstance(st, FitResult):
        return st
    bars = _Bars(progress, phase, num_batches(data.train, phase.batch_size, phase.max_batches), st.start)
    for epoch in range(st.start, phase.epochs):
        val_acc = _run_epoch(run, st, epoch, bars)
        if run.last_path is not None:
            wall_s = st.wall_before + time.perf_counter() - run.t0
            save_progress(
                run.last_path, st, model, optimizers, run.gen, wall_s=wall_s, config_hash=config_hash
            )
        bars.epoch_done(val_acc)
        if st.stopped:
            break
    bars.close()
    return _finish(run, st)


def _resume(run: _Run) -> LoopState | FitResult:
    """Continue from the phase checkpoint if it was written under the same config: a finished phase
    gives its stored result (the model holds its final state), an interrupted one the state to continue
    from, with model, optimizers, schedulers and random generators restored. Otherwise a fresh state."""
    ck = _resumable(run.last_path, run.phase.name, run.config_hash)
    if ck is None:
        return LoopState()
    run.model.load_state_dict(ck["model"])
    if ck.get("finished"):
        _console.log(f"{run.phase.name}: finished earlier with the same config, reusing it")
        return FitResult(**ck["result"])
    _console.log(f"resuming {run.phase.name} from epoch {ck['epoch'] + 1}")
    return restore(ck, run.optimizers, run.gen)


def _run_epoch(run: _Run, st: LoopState, epoch: int, bars: _Bars) -> float:
    """Train, validate and select for one epoch, step the LR schedules, call ``on_epoch_end`` and
    append the epoch's row to the history; returns the validation accuracy."""
    run.model.train()
    te = time.perf_counter()
    strength = run.cost_term.strength_at(epoch) if run.cost_term is not None else 0.0
    bars.new_epoch()
    train_sums = _train_epoch(run, epoch, strength, bars)
    row = _validate(run, epoch, strength, train_sums, bars.n_batches)
    val_acc = row["val_acc"]
    _select(run, st, epoch, row)
    for _, sch in run.optimizers:
        if sch is not None:
            sch.step()
    if run.on_epoch_end is not None:
        row.update(run.on_epoch_end(epoch))
    row["wall_s"] = time.perf_counter() - te
    st.history.append(row)
    st.epoch = epoch
    st.stopped = st.counter >= run.phase.patience
    return val_acc


def _train_epoch(run: _Run, epoch: int, strength: float, bars: _Bars) -> tuple[float, float, float, int]:
    """One pass over the shuffled training batches, every optimizer stepped on each batch with the
    loss ``CE + strength * cost``; returns the summed loss * batch, correct predictions, cost, and the
    sample count."""
    # running sums stay on the device: one host sync per epoch, not three per step
    sums = torch.zeros(3, device=run.data.train.x.device)  # loss * batch, correct, cost
    tn = 0
    for x, y in batches(
        run.data.train,
        run.phase.batch_size,
        shuffle=True,
        generator=run.gen,
        augment=run.data.augment,
        max_batches=run.phase.max_batches,
    ):
        out = run.model(x)
        loss = run.crit(out, y)
        if run.cost_term is not None:
            c = run.cost_term()
            sums[2] += c.detach()
            if strength != 0.0:
                loss = loss + strength * c
        for opt, _ in run.optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt, _ in run.optimizers:
            opt.step()
        bs = int(y.shape[0])
        sums[0] += loss.detach() * bs
        sums[1] += (out.detach().argmax(1) == y).sum()
        tn += bs
        bars.batch_done()
    tl, tc, cost_sum = sums.tolist()
    if not math.isfinite(tl):
        raise FloatingPointError(f"{run.phase.name}: the training loss became {tl} at epoch {epoch}")
    return tl, tc, cost_sum, tn


def _validate(
    run: _Run, epoch: int, strength: float, train_sums: tuple[float, float, float, int], n_batches: int
) -> dict[str, Any]:
    """The history row of the epoch: training means and the validation metrics; in the search also the
    strength and the expected and discrete costs, the validation loss then including
    ``strength * discrete cost`` (§6.1, KWS)."""
    tl, tc, cost_sum, tn = train_sums
    data, phase = run.data, run.phase
    val_loss, val_acc = evaluate(
        run.model,
        data.val,
        phase.eval_batch_size,
        class_weights=data.class_weights,
        augment=data.augment if data.augment_val else None,
        seed=run.seed + epoch,
        max_batches=phase.max_batches,
    )
    row: dict[str, Any] = {
        "phase": phase.name,
        "epoch": epoch,
        "lr": run.optimizers[0][0].param_groups[0]["lr"],
        "train_loss": tl / max(tn, 1),
        "train_acc": 100.0 * tc / max(tn, 1),
        "val_loss": val_loss,
        "val_acc": val_acc,
    }
    if run.cost_term is not None:
        with torch.no_grad():
            disc = float(run.cost_term(fresh=True))
        row.update(strength=strength, expected_cost=cost_sum / max(n_batches, 1), discrete_cost=disc)
        row["val_loss"] = val_loss + strength * disc
    return row


def _select(run: _Run, st: LoopState, epoch: int, row: dict[str, Any]) -> None:
    """Keep the epoch's state as the best one (and write ``<phase>_best.pt``) or count it against the
    patience. Before the start epoch the latest state is kept provisionally; from it on, the first call
    always saves and later ones only on strict improvement (§6.1)."""
    phase = run.phase
    metric = row["val_acc"] if phase.monitor == "val_acc" else -row["val_loss"]
    provisional = epoch < phase.start_epoch()
    if provisional or st.best_epoch < phase.start_epoch() or st.best_val is None or metric > st.best_val:
        st.best_val, st.best_epoch = metric, epoch
        st.counter = 0
        st.best_state = copy.deepcopy(run.model.state_dict())
        if run.best_path is not None:
            atomic_torch_save(run.best_path, st.best_state)
    else:
        st.counter += 1


def _finish(run: _Run, st: LoopState) -> FitResult:
    """Load the best state, evaluate the test split (and the extra test sets) on it, and mark the phase
    finished in ``<phase>_last.pt`` with its result."""
    model, data, phase = run.model, run.data, run.phase
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    best_row = next((r for r in st.history if r["epoch"] == st.best_epoch), {})
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
        history=st.history,
        best_epoch=st.best_epoch,
        val_acc=float(best_row.get("val_acc", math.nan)),
        val_loss=float(best_row.get("val_loss", math.nan)),
        test_acc=test_acc,
        test_loss=test_loss,
        extra_test_acc=extra,
        wall_s=st.wall_before + time.perf_counter() - run.t0,
        epochs_run=st.epoch + 1,
        stopped_early=st.stopped,
    )
    if run.last_path is not None:
        save_finished(run.last_path, model, asdict(result), run.config_hash)
    return result


def _resumable(path: Path | None, phase: str, config_hash: str | None) -> dict[str, Any] | None:
    """The phase checkpoint at ``path`` if it was written under ``config_hash``; None (restart) if there
    is none or it belongs to another config, which one line says."""
    if path is None or not path.exists():
        return None
    ck = load(path)
    if ck.get("config_hash") != config_hash:
        _console.log(
            f"{phase}: {path} was written by a different config (hash {ck.get('config_hash')}, "
            f"now {config_hash}); restarting {phase} from epoch 0"
        )
        return None
    return ck
