"""Parameter, weight and MAC counts of a seed network.

Why: docs/benchmarks.md has exact totals per seed (§2.4 ResNet-8, §3.4 DS-CNN, §4.3 ResNet-18); counting
them from the module itself is how the tests prove the networks are built as specified, and the 8-bit
size of §8 ("Σ weights × bits / 8 over conv+linear weights, biases excluded") is `count_weights`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (weights, biases, BN affine), as counted in docs/benchmarks.md §1."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_weights(model: nn.Module) -> int:
    """Conv and Linear weights only: what the size cost quantizes (no bias, no BN; docs/benchmarks.md §8)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, _WEIGHTED))


def _layer_macs(m: nn.Module, out: Tensor) -> int:
    """MACs of one conv/linear call on a batch of 1.

    Every output element of a conv costs C_in/groups x prod(kernel) MACs, which is `weight[0].numel()`;
    this makes depthwise (groups = C_in) and grouped convs come out right without special cases. A Linear
    costs in x out per row; rows beyond the batch (e.g. a sequence axis) are counted too.
    """
    if isinstance(m, nn.Linear):
        rows = out[0].numel() // m.out_features
        return rows * m.in_features * m.out_features
    return m.weight[0].numel() * out[0].numel()


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one inference of a single sample of shape `input_shape` (no batch axis).

    Conv (any groups) and Linear layers only, measured by forward hooks on a batch of 1 in eval mode (so
    dropout and BN batch statistics play no part); the model's training flag is restored afterwards.
    """
    total = 0

    def hook(m: nn.Module, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        total += _layer_macs(m, out)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _WEIGHTED)]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total
