"""The cost-model interface, its registry, and the batched view of a spec list every model consumes.

A cost model is a pure, differentiable function of the ``list[LayerSpec]`` of a network (docs/method.md §5).
It is evaluated at every search step, so each model works on a :class:`StackedSpecs`: the soft fields of
all layers stacked once per call into ``(L, 4)`` / ``(L,)`` / ``(L, 3)`` tensors, and the static fields
(op, kernel, output size) as tensors cached by their tuple, so one cost is a handful of vectorised ops
whatever the depth of the network. Nothing here imports jpq beyond the spec and its error class
(docs/architecture.md §2: the cost package depends only on torch and its own spec).

Models register under a short name (``register_cost``) and are built either by :func:`get_cost` or, from a
``conf/cost/*.yaml`` file, by ``hydra.utils.instantiate`` on its ``_target_``; constructors therefore take
plain keyword options only. :meth:`CostModel.check` rejects, before any training, the precisions a model
cannot describe (e.g. NE16 has 8-bit activations only, §5.5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from jpq.cost.spec import A_BITS_ALL, W_BITS_ALL, LayerSpec
from jpq.errors import ConfigError

#: the cost models jpq ships (the keys of ``conf/cost/``); :func:`registered_costs` also lists user ones
COST_NAMES: tuple[str, ...] = ("size", "bitops", "mpic", "ne16")

#: a static description of one layer: (op, kernel, out_hw); the key of the cached static tensors
StaticKey = tuple[tuple[str, tuple[int, int], tuple[int, int]], ...]


@dataclass(frozen=True)
class StaticTensors:
    """Per-layer constants of a spec list as ``(L,)`` tensors (cached, never part of the graph).

    Attributes:
        kk: ``kh*kw``.
        hw: ``Ho*Wo``.
        is_dw: depthwise layers (bool).
        has_dw: whether any layer is depthwise (a Python bool, so no device sync to branch on it).
        w_bits: ``(len(W_BITS_ALL),)`` the global weight precisions, aligned with ``n_w``.
        a_bits: ``(len(A_BITS_ALL),)`` the global activation precisions, aligned with ``a_in``.
    """

    kk: Tensor
    hw: Tensor
    is_dw: Tensor
    has_dw: bool
    w_bits: Tensor
    a_bits: Tensor


@dataclass(frozen=True)
class StackedSpecs:
    """All layers of a spec list as batched tensors (docs/method.md §5.1 quantities).

    Attributes:
        n_w: ``(L, len(W_BITS_ALL))`` expected channel counts per weight precision.
        cin_eff: ``(L,)`` effective input channels (with graph; each model decides whether to detach).
        a_in: ``(L, len(A_BITS_ALL))`` input-activation precision probabilities.
        key: the static description, to look up model-specific cached constants.
        static: the cached static tensors of ``key``.
    """

    n_w: Tensor
    cin_eff: Tensor
    a_in: Tensor
    key: StaticKey
    static: StaticTensors

    @property
    def c_eff(self) -> Tensor:
        """``(L,)`` expected kept output channels ``C_eff = C - n_0`` (§5.1)."""
        return self.n_w[:, 1:].sum(dim=-1)

    @property
    def dtype(self) -> torch.dtype:
        return self.n_w.dtype

    @property
    def device(self) -> torch.device:
        return self.n_w.device


def static_key(specs: Sequence[LayerSpec]) -> StaticKey:
    """The hashable static description of ``specs`` (what the cached tensors depend on)."""
    return tuple((s.op, tuple(s.kernel), tuple(s.out_hw)) for s in specs)  # type: ignore[misc]


@lru_cache(maxsize=128)
def static_tensors(key: StaticKey, device: torch.device, dtype: torch.dtype) -> StaticTensors:
    """Build the static tensors once per (architecture, device, dtype): they never change in a run."""
    kk = [k[0] * k[1] for _, k, _ in key]
    hw = [o[0] * o[1] for _, _, o in key]
    dw = [op == "dw" for op, _, _ in key]
    return StaticTensors(
        kk=torch.tensor(kk, dtype=dtype, device=device),
        hw=torch.tensor(hw, dtype=dtype, device=device),
        is_dw=torch.tensor(dw, dtype=torch.bool, device=device),
        has_dw=any(dw),
        w_bits=torch.tensor(W_BITS_ALL, dtype=dtype, device=device),
        a_bits=torch.tensor(A_BITS_ALL, dtype=dtype, device=device),
    )


def _as_tensor(x: Tensor | float, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(x, Tensor):
        return x if (x.dtype == dtype and x.device == device) else x.to(dtype=dtype, device=device)
    return torch.tensor(float(x), dtype=dtype, device=device)


def stack_specs(specs: Sequence[LayerSpec] | StackedSpecs) -> StackedSpecs:
    """Stack the soft fields of ``specs`` (three ``torch.stack`` calls) and attach the cached statics; stacked
    specs (``SearchableNet.stacked_specs``) are returned as they are.

    The dtype and device are those of the first layer's ``n_w``; other fields are converted to them.
    """
    if isinstance(specs, StackedSpecs):
        return specs
    if not specs:
        raise ValueError("stack_specs needs at least one LayerSpec")
    for s in specs:
        if s.op not in ("conv", "dw", "linear"):
            raise ValueError(f"layer {s.name!r}: unknown op {s.op!r} (expected conv, dw or linear)")
    dtype, device = specs[0].n_w.dtype, specs[0].n_w.device
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    n_w = torch.stack([_as_tensor(s.n_w, dtype, device) for s in specs])
    cin_eff = torch.stack([_as_tensor(s.cin_eff, dtype, device).reshape(()) for s in specs])
    a_in = torch.stack([_as_tensor(s.a_in, dtype, device) for s in specs])
    key = static_key(specs)
    return StackedSpecs(n_w, cin_eff, a_in, key, static_tensors(key, device, dtype))


def empty_per_layer() -> Tensor:
    """The ``(0,)`` per-layer cost of a network with no searched layer (its total is 0)."""
    return torch.zeros(0)


class CostModel:
    """Base class of a cost model: a differentiable function of a spec list (docs/method.md §5).

    Subclasses set ``name`` and ``unit`` and implement :meth:`per_layer`; ``__call__`` sums it. Options are
    plain keyword arguments so that ``hydra.utils.instantiate`` can build a model from ``conf/cost/*.yaml``
    (whose ``name`` key is accepted and, if given, relabels the instance).
    """

    name: ClassVar[str] = "cost"
    unit: ClassVar[str] = ""

    def __init__(self, *, name: str | None = None) -> None:
        if name is not None:
            self.name = name  # type: ignore[misc]

    def per_layer(self, specs: Sequence[LayerSpec]) -> Tensor:
        """``(L,)`` cost of every layer, in ``unit``."""
        raise NotImplementedError

    def __call__(self, specs: Sequence[LayerSpec]) -> Tensor:
        """Scalar total cost of the network, in ``unit`` (differentiable)."""
        return self.per_layer(specs).sum()

    def check(self, w_bits: tuple[int, ...], a_bits: tuple[int, ...], input_bits: tuple[int, ...]) -> None:
        """Raise :class:`ConfigError` if the search space holds precisions this model cannot describe.

        The base check is what a :class:`LayerSpec` can carry at all: weight precisions within
        ``W_BITS_ALL`` and activation/input precisions within ``A_BITS_ALL``.
        """
        require_subset(self.name, "weight", w_bits, W_BITS_ALL)
        require_subset(self.name, "activation", a_bits, A_BITS_ALL)
        require_subset(self.name, "input activation", input_bits, A_BITS_ALL)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def require_subset(model: str, what: str, got: Sequence[int], allowed: Sequence[int]) -> None:
    """One-line :class:`ConfigError` naming the precisions outside ``allowed``."""
    bad = [b for b in got if b not in allowed]
    if bad:
        raise ConfigError(
            f"cost model {model!r} cannot model {what} precision(s) {tuple(bad)} bits "
            f"(supported: {tuple(allowed)})"
        )


_REGISTRY: dict[str, type[CostModel]] = {}

C = TypeVar("C", bound=type[CostModel])


def register_cost(name: str) -> Callable[[C], C]:
    """Class decorator: make a :class:`CostModel` subclass available as ``get_cost(name)``."""

    def deco(cls: C) -> C:
        old = _REGISTRY.get(name)
        if old is not None and old.__qualname__ != cls.__qualname__:
            raise ValueError(f"cost model name {name!r} is already registered by {old.__qualname__}")
        _REGISTRY[name] = cls
        return cls

    return deco


def registered_costs() -> tuple[str, ...]:
    """Every registered cost-model name (the built-in ``COST_NAMES`` plus user registrations), sorted."""
    return tuple(sorted(_REGISTRY))


def get_cost(name: str, **kwargs: Any) -> CostModel:
    """Build the registered cost model ``name`` with keyword options; unknown names or options are
    :class:`ConfigError` (one line, listing what is known)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ConfigError(f"unknown cost model {name!r}; known: {', '.join(registered_costs())}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"cost model {name!r}: invalid options {sorted(kwargs)} ({exc})") from exc
