"""The building layer (docs/architecture.md §2): a composed config -> the things a run is made of.

The dataset (:func:`load_data`), the float seed network (:func:`build_seed_model`), the searchable network
(:func:`convert_from_cfg`, the one mapping of config keys to :func:`jpq.search.convert`), the cost model of
the search loss (:func:`build_cost`) and the settings of a training phase (:func:`phase_spec`,
:func:`optim_cfg`). The pipeline, the methods, the export and the CLI all build through here, so a run
folder is rebuilt exactly as it was trained.
"""

from __future__ import annotations

import os
import random
from dataclasses import fields
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from torch import Tensor, nn

from jpq.config import a_bits_of, w_bits_of
from jpq.cost import get_cost, to_uniform
from jpq.cost.spec import LayerSpec
from jpq.data import INPUT_QUANT, DataBundle, Split, load_dataset
from jpq.data.base import InputQuant
from jpq.errors import ConfigError
from jpq.search import SearchableNet, convert
from jpq.search.budget import check_reachable, resolve_budget, target_request
from jpq.train.cache import cache_key
from jpq.train.loop import PhaseSpec
from jpq.train.optim import OptimConfig

#: the run's log (stderr): the pipeline, the methods and their progress bars share it
console = Console(stderr=True)

# settings that never change what a run computes: left out of the hash that guards its checkpoints
_UNHASHED = ("progress", "data_dir", "cache_dir", "device", "threads")


def run_hash(cfg: DictConfig) -> str:
    """The hash of everything in the job's config that determines its training; a phase checkpoint
    written under another hash is not resumed."""
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    return cache_key({k: v for k, v in c.items() if k not in _UNHASHED and k != "hydra"})


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":16:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False


def first_line(e: Exception, limit: int = 300) -> str:
    """An exception's message as one line (torch's load errors span many)."""
    text = "; ".join(ln.strip() for ln in str(e).splitlines() if ln.strip())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _instantiate_error(e: Exception) -> str:
    """Hydra's instantiate error as one line: the underlying error, without Hydra's hints."""
    cause = e.__cause__
    if isinstance(cause, TypeError):  # bad arguments of the target
        return first_line(cause)
    text = first_line(e).split(", set env var HYDRA_FULL_ERROR")[0]
    return text.split("; full_key:")[0]


def build_cost(cost_cfg: DictConfig) -> tuple[Any, bool]:
    """The cost model of the search loss and whether it is normalised by the 8-bit seed's cost."""
    c = OmegaConf.to_container(cost_cfg, resolve=True)
    assert isinstance(c, dict)
    normalize = bool(c.pop("normalize", True))
    name = c.pop("name")
    if "_target_" not in c:
        return get_cost(name, **c), normalize
    try:
        model = instantiate(c)
    except Exception as e:  # noqa: BLE001 - instantiate wraps import and argument errors
        raise ConfigError(f"cannot build cost model {c['_target_']}: {_instantiate_error(e)}") from e
    from jpq.cost.registry import CostModel

    if not isinstance(model, CostModel):
        raise ConfigError(f"cost._target_={c['_target_']} is not a jpq cost model (a CostModel subclass)")
    return model, normalize


def reference_cost(cost_model: Any, specs: list[LayerSpec]) -> float:
    """Cost of the same seed with every channel and activation at 8 bits (normaliser, docs/method.md §5.8)."""
    return float(cost_model(to_uniform(specs, 8, 8)))


def build_seed_model(cfg: DictConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The float seed network of ``cfg.model`` (untrained)."""
    try:
        return instantiate(cfg.model, num_classes=num_classes, in_channels=in_channels)
    except Exception as e:  # noqa: BLE001 - instantiate wraps import and argument errors
        target = cfg.model.get("_target_", "?")
        raise ConfigError(f"cannot build model {target}: {_instantiate_error(e)}") from e


def load_data(cfg: DictConfig) -> DataBundle:
    d = cfg.dataset
    opts: dict[str, Any] = {"download": d.download, "seed": cfg.seed}
    if d.val_size is not None:
        opts["val_size"] = d.val_size
    if d.name == "gsc":
        opts["class_weights"] = d.class_weights
    if d.name != "digits":
        opts["progress"] = cfg.progress
    data = load_dataset(d.name, cfg.data_dir, **opts)
    if tuple(data.input_shape) != tuple(d.input_shape) or data.num_classes != d.num_classes:
        raise ConfigError(
            f"dataset {d.name}: config says input {tuple(d.input_shape)} / {d.num_classes} "
            f"classes, the data has {tuple(data.input_shape)} / {data.num_classes}"
        )
    if d.limit_train is not None:
        data.train = Split(data.train.x[: d.limit_train], data.train.y[: d.limit_train])
    return data


def convert_from_cfg(
    cfg: DictConfig, seed_model: nn.Module, example: Tensor, input_quant: InputQuant | None, *,
    training: bool = True,
) -> SearchableNet:
    """The searchable network of ``cfg.method`` (its bit sets, per-layer search), ``cfg.sampler`` and
    ``keep_alive`` on ``seed_model``. ``training=False`` rebuilds a finished run's network to load its
    checkpoint into: no initial weight rescale (the checkpoint holds the trained weights) and the eager
    quantizers (the temperature comes back with the checkpoint)."""
    return convert(
        seed_model.cpu(),
        example,
        w_bits=w_bits_of(cfg),
        a_bits=a_bits_of(cfg),
        sampler=cfg.sampler.name,
        gumbel_hard=cfg.sampler.gumbel_hard,
        temperature=cfg.sampler.temperature,
        per_layer=cfg.method.per_layer,
        input_quant=input_quant,
        keep_alive=cfg.keep_alive,
        rescale=training,
        fused=training and cfg.trainer.search_step == "fused",
    )


def seed_specs(cfg: DictConfig, w_bits: int) -> list[LayerSpec]:
    """The layers of the untrained seed of ``cfg`` with every channel at ``w_bits`` and 8-bit activations
    (``jpq cost``: what a seed costs before any search)."""
    shape = tuple(cfg.dataset.input_shape)
    model = build_seed_model(cfg, cfg.dataset.num_classes, shape[0])
    net = convert(model, torch.zeros(1, *shape), w_bits=(8,), a_bits=(8,), input_quant=InputQuant())
    return to_uniform(net.layer_specs(fresh=True), w_bits, 8)


def phase_spec(cfg: DictConfig, name: str) -> PhaseSpec:
    """The loop settings of phase ``trainer.<name>``."""
    p = cfg.trainer[name]  # a PhaseCfg: every PhaseSpec field but the name, and the optimizer
    return PhaseSpec(name=name, **{f.name: p[f.name] for f in fields(PhaseSpec) if f.name != "name"})


def optim_cfg(node: DictConfig) -> OptimConfig:
    return OptimConfig(**OmegaConf.to_container(node, resolve=True))  # type: ignore[arg-type]


def check_target_floor(cfg: DictConfig, seed_model: nn.Module, *, prunes_first: bool = False) -> None:
    """A budget target below the cheapest network the search can reach (every group at its cheapest
    allowed assignment, :func:`jpq.search.repair.floor_cost`) fails at start-up, before any data is
    loaded: the floor is taken on ``seed_model`` converted on a zero input (costs depend on shapes only).

    A method that prunes before it searches (``prunes_first``: PIT, then the search) checks an absolute
    target against the seed with pruning allowed (PIT can go down to one channel per group); a fraction,
    a share of the pruned network's 8-bit cost, is known only after PIT and checked then
    (:func:`jpq.search.budget.check_reachable`)."""
    req = target_request(cfg)
    if req is None or (prunes_first and req[0] == "fraction"):
        return
    w_bits = w_bits_of(cfg)
    if prunes_first and 0 not in w_bits:
        w_bits = (0, *w_bits)
    example = torch.zeros(1, *(int(d) for d in cfg.dataset.input_shape))
    net = convert(seed_model, example, w_bits=w_bits, a_bits=a_bits_of(cfg), per_layer=cfg.method.per_layer,
                  input_quant=INPUT_QUANT.get(cfg.dataset.name))
    budget = resolve_budget(cfg, net.layer_specs(fresh=True))
    assert budget is not None
    check_reachable(net, budget)
