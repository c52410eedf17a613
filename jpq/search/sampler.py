"""Sampling of the architecture coefficients ``theta`` from the logits ``alpha`` (docs/method.md §3.2).

| sampler        | training                                   | eval                          |
|----------------|--------------------------------------------|-------------------------------|
| ``softmax``    | ``softmax(alpha / T)``                     | one-hot argmax (STE)          |
| ``gumbel``     | ``gumbel_softmax(alpha, T, hard)``          | one-hot argmax (STE)          |
| ``hard``       | STE-argmax of ``softmax(alpha / T)``        | same                          |

``dim=0`` is always the precision axis; every channel is normalised on its own. Gumbel noise is drawn
anew at every call, so members of one sharing group get independent samples (§11 item 7).
Temperature annealing (§3.4): ``T <- T * decay`` after every search epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

SAMPLERS = ("softmax", "gumbel", "hard")
#: per-epoch temperature decay of the CIFAR-10 and KWS scripts (§3.4)
DEFAULT_DECAY = math.exp(-0.045)


class _STEArgmax(torch.autograd.Function):
    """Forward: one-hot argmax along dim 0 (ties -> lowest index, §3.5). Backward: identity."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        return one_hot_argmax(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def one_hot_argmax(x: Tensor) -> Tensor:
    """One-hot of ``argmax(x, dim=0)`` laid out like ``x``; torch.argmax returns the first maximum."""
    idx = torch.argmax(x, dim=0, keepdim=True)
    return torch.zeros_like(x).scatter_(0, idx, 1.0)


def ste_argmax(x: Tensor) -> Tensor:
    return _STEArgmax.apply(x)


@dataclass
class SamplerState:
    """Shared by every quantizer of one network: which sampler, the current temperature, and whether the
    quantizers run the fused kernels (``trainer.search_step=fused``) or the eager ones."""

    name: str = "softmax"
    temperature: float = 1.0
    gumbel_hard: bool = False
    fused: bool = False
    #: eager step: each layer's weight side as one autograd node (jpq.quant.params); False composes
    #: mixed_weight and quantize_bias as before: the same values and per-layer gradients, but a logit
    #: gradient with several contributions sums them in another order (differences of float rounding)
    layer_node: bool = True

    def __post_init__(self) -> None:
        if self.name not in SAMPLERS:
            raise ValueError(f"unknown sampler {self.name!r}; choose one of {', '.join(SAMPLERS)}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


def sample(alpha: Tensor, state: SamplerState, training: bool) -> Tensor:
    """``theta`` from ``alpha`` (P, ...) per the sampler table above."""
    t = state.temperature
    scaled = alpha if t == 1.0 else alpha / t  # x / 1 is x, value and gradient: one op less per group
    if not training:
        return ste_argmax(F.softmax(scaled, dim=0))
    if state.name == "softmax":
        return F.softmax(scaled, dim=0)
    if state.name == "hard":
        return ste_argmax(F.softmax(scaled, dim=0))
    return F.gumbel_softmax(alpha, tau=t, hard=state.gumbel_hard, dim=0)


def anneal(temperature: float, decay: float) -> float:
    """One epoch of the FBNetV2-like schedule, ``T * decay`` (§3.4; decay = exp(-0.045) by default)."""
    return temperature * decay
