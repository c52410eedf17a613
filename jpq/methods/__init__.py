"""The search methods, one module per family, behind one interface (:class:`jpq.methods.base.Method`).

Every module of this package but ``base`` lists its methods in ``METHODS`` (name -> instance);
:func:`get_method` finds a method by ``cfg.method.name``. Adding a method is a new module here plus
``conf/method/<name>.yaml`` (docs/architecture.md §6).
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from omegaconf import DictConfig

from jpq.errors import ConfigError
from jpq.methods.base import Method, MethodResult, RunContext

_NOT_METHODS = ("base",)


@cache
def registry() -> dict[str, Method]:
    """Every method of the package's modules, by name."""
    found: dict[str, Method] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _NOT_METHODS:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for name, method in getattr(module, "METHODS", {}).items():
            if name in found:
                raise RuntimeError(f"method {name!r} is defined twice (jpq.methods.{info.name})")
            found[name] = method
    return found


def get_method(name: str) -> Method:
    """The method ``cfg.method.name`` names; an unknown name is a one-line ConfigError."""
    methods = registry()
    if name not in methods:
        raise ConfigError(f"method.name={name!r}: choose one of {', '.join(methods)}")
    return methods[name]


def check_method(cfg: DictConfig) -> Method:
    """The start-up checks of ``cfg.method``: a known name, the method's own rules, and a budget target
    only for a method whose search a target can steer (``Method.steerable``)."""
    method = get_method(cfg.method.name)
    method.check(cfg)
    from jpq.search.budget import target_request

    request = target_request(cfg)
    if request is not None and not method.steerable:
        steerable = ", ".join(n for n, m in registry().items() if m.steerable)
        raise ConfigError(
            f"target.{request[0]}: method={method.name} does not search; use one of {steerable}"
        )
    return method


def epochs_total(cfg: DictConfig) -> int:
    """Configured training epochs of one run, for comparisons at equal training: the warmup (a cached
    one counts: the network was trained for it, just not in this process) and every stage of the method."""
    warm = cfg.trainer.warmup.epochs if "warmup" in cfg.phases else 0
    return int(warm + get_method(cfg.method.name).epochs(cfg))


__all__ = ["Method", "MethodResult", "RunContext", "check_method", "epochs_total", "get_method", "registry"]
