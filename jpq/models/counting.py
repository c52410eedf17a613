"""Parameter and MAC counts of a seed network (checked against benchmarks.md §2.4, §3.4, §4.3)."""

from __future__ import annotations

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_weights(model: nn.Module) -> int:
    """Conv and Linear weights only (what the size cost counts; biases excluded, §1.6)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear))


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one inference: Conv (any groups) and Linear layers, via forward hooks on a batch of 1."""
    total = 0

    def hook(m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
        else:
            per_out = m.weight[0].numel()  # (C_in / groups) * k...
            total += per_out * out[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear)]
    was = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return total
