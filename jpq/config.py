"""Typed configuration schema (Hydra ConfigStore) and the semantic checks run before any training.

The schema makes typos (``strenght=1``) and non-numeric values (``strength=abc``) fail at compose
time; :func:`validate` then checks what a type cannot express (ranges, bit-width sets, a cost model's
limits) and raises :class:`ConfigError` with one clear line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from jpq.cost.spec import A_BITS_ALL, W_BITS_ALL
from jpq.errors import ConfigError
from jpq.train.optim import OptimConfig

PHASES = ("warmup", "search", "finetune")
DEVICES = ("auto", "cpu", "cuda")  # and cuda:N


def conf_dir() -> str:
    """Absolute path of the configs: the source tree's ``conf/`` or the installed ``jpq.conf`` package."""
    import jpq.conf

    return str(Path(jpq.conf.__file__).resolve().parent)


@dataclass
class PhaseCfg:
    epochs: int = 30
    batch_size: int = 32
    eval_batch_size: int = 256
    patience: int = 50
    early_stop_start: int = -1
    monitor: str = "val_acc"
    max_batches: int | None = None
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class TrainerCfg:
    warmup: PhaseCfg = field(default_factory=PhaseCfg)
    search: PhaseCfg = field(default_factory=PhaseCfg)
    finetune: PhaseCfg = field(default_factory=PhaseCfg)
    arch_optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            name="sgd", lr=1e-2, weight_decay=0.0, momentum=0.9, scheduler="exp", gamma=0.99
        )
    )
    strength_schedule: str = "constant"  # constant | incremental (§6.1)
    search_step: str = "fused"  # fused (one-pass kernels, the same values) | eager (see README)


@dataclass
class DatasetCfg:
    name: str = MISSING
    num_classes: int = MISSING
    input_shape: list[int] = MISSING
    download: bool = False
    limit_train: int | None = None  # use only the first N training samples (CPU recipes, smoke runs)
    val_size: int | None = None
    class_weights: bool = False


@dataclass
class MethodCfg:
    name: str = "joint"
    w_bits: Any = field(default_factory=lambda: [0, 2, 4, 8])
    a_bits: Any = field(default_factory=lambda: [8])
    per_layer: bool = False
    pit_strength: float = 1.0  # pit / pit_mixprec: strength of PIT's parameter cost (normalised)
    pit_arch_lr: float = 1.0e-3  # pit / pit_mixprec: Adam lr of the PIT mask logits (§7)


@dataclass
class SamplerCfg:
    name: str = "softmax"
    temperature: float = 1.0
    decay: float = 0.955997481833100  # exp(-0.045), §3.4
    gumbel_hard: bool = False


@dataclass
class WarmupCfg:
    init_from: str | None = None  # a state_dict checkpoint of the seed network


@dataclass
class TargetCfg:
    """Budget mode (jpq/search/budget.py): at most one target; the search is steered to it."""

    size_kb: float | None = None
    ne16_cycles: float | None = None
    mpic_cycles: float | None = None
    bitops: float | None = None
    fraction: float | None = None  # of the 8-bit seed's cost under `cost`
    aim: float = 0.95  # the controller's set point, as a share of the target (headroom for the argmax)
    fill: bool = True  # after the argmax, promote channels while the network stays within the target
    start: float = 0.1  # the multiplier the controller starts from (budget mode does not use strength)
    rate: float = 0.15  # the controller's gain: change of log(multiplier) per epoch at an error of e


@dataclass
class Config:
    dataset: DatasetCfg = MISSING
    model: Any = MISSING
    method: MethodCfg = field(default_factory=MethodCfg)
    sampler: SamplerCfg = field(default_factory=SamplerCfg)
    cost: Any = MISSING
    trainer: TrainerCfg = field(default_factory=TrainerCfg)
    warmup: WarmupCfg = field(default_factory=WarmupCfg)
    target: TargetCfg = field(default_factory=TargetCfg)
    strength: float = 0.0
    seed: int = 14
    device: str = "auto"
    threads: int | None = None  # intra-op threads; null: the job's share of the cores (jpq.train.resources)
    data_dir: str = "data"
    cache_dir: str = "outputs/.cache"
    phases: list[str] = field(default_factory=lambda: list(PHASES))
    keep_alive: bool = True
    ne16_promote: bool = False  # after the search, raise precisions filling NE16 tiles (docs/method.md §5.9)
    deterministic: bool = False
    progress: bool = True


def register_schema() -> None:
    ConfigStore.instance().store(name="jpq_schema", node=Config)


def _bits(value: Any, allowed: tuple[int, ...], what: str) -> tuple[int, ...]:
    """A bit-width set from an int, a list or a comma string; refuses empty sets and unknown widths."""
    items = value if isinstance(value, list | tuple) or OmegaConf.is_list(value) else [value]
    if isinstance(value, str):
        items = [v for v in value.split(",") if v.strip()]
    out = []
    for v in items:
        try:
            b = int(str(v).strip())
        except ValueError:
            raise ConfigError(
                f"{what}: {v!r} is not a number; choose bit-widths from {sorted(allowed)}"
            ) from None
        if b not in allowed:
            raise ConfigError(f"{what}: {b} bits is not supported; choose from {sorted(allowed)}")
        out.append(b)
    if not out:
        raise ConfigError(f"{what} is empty; choose bit-widths from {sorted(allowed)}")
    return tuple(sorted(set(out)))


def w_bits_of(cfg: DictConfig) -> tuple[int, ...]:
    return _bits(cfg.method.w_bits, W_BITS_ALL, "method.w_bits")


def a_bits_of(cfg: DictConfig) -> tuple[int, ...]:
    if (
        isinstance(cfg.method.a_bits, int)
        and cfg.method.a_bits == 0
        or (OmegaConf.is_list(cfg.method.a_bits) and 0 in list(cfg.method.a_bits))
    ):
        raise ConfigError("method.a_bits: 0 bits is not allowed for activations (only weights can be pruned)")
    return _bits(cfg.method.a_bits, A_BITS_ALL, "method.a_bits")


#: the largest ``seed``: every phase seeds its generators with ``seed + k`` (k <= 12), and numpy's
#: generator takes seeds below 2**32
SEED_MAX = 2**32 - 1 - 16


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def _range(where: str, value: Any, lo: float, hi: float = math.inf, *, lo_open: bool = False) -> None:
    """``value`` is a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``); else ConfigError."""
    ok = isinstance(value, int | float) and math.isfinite(value) and value <= hi
    ok = ok and (value > lo if lo_open else value >= lo)
    if not ok:
        if math.isfinite(hi):
            span = f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}]"
        else:
            span = f"{'>' if lo_open else '>='} {_num(lo)}"
        raise ConfigError(f"{where} must be a finite number {span}, got {value}")


def _optional_min(where: str, value: Any, lo: int) -> None:
    if value is not None:
        _range(where, value, lo)


def _check_phase(name: str, ph: DictConfig) -> None:
    where = f"trainer.{name}"
    _range(f"{where}.epochs", ph.epochs, 0)
    for key in ("batch_size", "eval_batch_size", "patience"):
        _range(f"{where}.{key}", ph[key], 1)
    _range(f"{where}.early_stop_start", ph.early_stop_start, -1)
    if ph.monitor not in ("val_acc", "val_loss"):
        raise ConfigError(f"{where}.monitor={ph.monitor!r}: val_acc or val_loss")
    _optional_min(f"{where}.max_batches", ph.max_batches, 1)
    OptimConfig(**OmegaConf.to_container(ph.optim)).validate(f"{where}.optim")


def _check_method(cfg: DictConfig) -> None:
    m = cfg.method  # the name and each method's own rules: jpq.methods (get_method, Method.check)
    w_bits = w_bits_of(cfg)
    a_bits_of(cfg)
    if w_bits == (0,):
        raise ConfigError("method.w_bits=(0,) would prune every channel; add a non-zero bit-width")
    _range("method.pit_strength", m.pit_strength, 0)
    _range("method.pit_arch_lr", m.pit_arch_lr, 0, lo_open=True)


def _check_dataset(d: DictConfig) -> None:
    _range("dataset.num_classes", d.num_classes, 2)
    shape = list(d.input_shape)
    if not shape or not all(isinstance(v, int) and v >= 1 for v in shape):
        raise ConfigError(f"dataset.input_shape must be positive integers, got {shape}")
    _optional_min("dataset.limit_train", d.limit_train, 1)
    _optional_min("dataset.val_size", d.val_size, 1)


def _check_paths(cfg: DictConfig) -> None:
    for key in ("data_dir", "cache_dir"):
        path = Path(str(cfg[key])).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{key}={cfg[key]}: is a file, not a folder")


def validate(cfg: DictConfig) -> None:
    """Semantic checks before any data is loaded or any epoch trained: every numeric field in its valid
    range, every name known; raises a one-line ConfigError naming the key."""
    _range("strength", cfg.strength, 0)
    _range("seed", cfg.seed, 0, SEED_MAX)
    _check_method(cfg)
    _check_dataset(cfg.dataset)
    from jpq.search.sampler import SAMPLERS

    if cfg.sampler.name not in SAMPLERS:
        raise ConfigError(f"sampler.name={cfg.sampler.name!r}: choose one of {', '.join(SAMPLERS)}")
    _range("sampler.temperature", cfg.sampler.temperature, 0, lo_open=True)
    _range("sampler.decay", cfg.sampler.decay, 0, 1, lo_open=True)
    bad = [p for p in cfg.phases if p not in PHASES]
    if bad or not cfg.phases:
        raise ConfigError(f"phases={list(cfg.phases)}: use a non-empty subset of {list(PHASES)}")
    from jpq.train.resources import check_device_name

    check_device_name(cfg.device)
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigError(f"threads={cfg.threads}: must be >= 1 (or null for the job's share of the cores)")
    if cfg.trainer.strength_schedule not in ("constant", "incremental"):
        raise ConfigError(
            f"trainer.strength_schedule={cfg.trainer.strength_schedule!r}: constant or incremental"
        )
    for name in PHASES:
        _check_phase(name, cfg.trainer[name])
    OptimConfig(**OmegaConf.to_container(cfg.trainer.arch_optim)).validate("trainer.arch_optim")
    _check_paths(cfg)
    if "name" not in cfg.cost:
        raise ConfigError("cost: the cost config needs a 'name'")
