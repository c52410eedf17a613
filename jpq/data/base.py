"""Tensor-resident datasets and a batch iterator with batched augmentation.

Every dataset module returns a :class:`DataBundle` whose splits are plain tensors kept in memory
(and moved once to the training device). Augmentation is a *batched* function applied to a whole
mini-batch on the device, so the hot loop has no per-sample Python work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: a batched augmentation: (x (B, C, H, W) float, generator) -> augmented x of the same shape
Augment = Callable[[Tensor, torch.Generator], Tensor]


@dataclass
class Split:
    """One split: inputs ``x`` (N, ...) float32 and integer labels ``y`` (N,)."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class InputQuant:
    """How the network input is quantized (docs/method.md §1.5).

    ``signed=False``: unsigned PACT with clip ``hi`` (inputs in [0, 1] -> clip 1.0).
    ``signed=True``: signed PACT with clips ``lo``/``hi`` (MFCC features -> [-6, 6]).
    ``bits``: fixed input precisions, or None to use the searched activation set ``a_bits``.
    """

    signed: bool = False
    lo: float = 0.0
    hi: float = 1.0
    bits: tuple[int, ...] | None = None


@dataclass
class DataBundle:
    """Everything the pipeline needs from a dataset."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]  # one sample, e.g. (3, 32, 32)
    augment: Augment | None = None  # applied to training batches only
    augment_val: bool = False  # reference quirk: validation batches augmented too (CIFAR, TIN)
    extra_test: dict[str, Split] = field(default_factory=dict)  # e.g. {"perf": 200 MLPerf images}
    class_weights: Tensor | None = None  # for a class-weighted cross-entropy (GSC recipe)
    input_quant: InputQuant = field(default_factory=InputQuant)

    def to(self, device: torch.device | str) -> DataBundle:
        """Move every split (and the class weights) to ``device`` once, before training."""
        return DataBundle(
            name=self.name,
            train=self.train.to(device),
            val=self.val.to(device),
            test=self.test.to(device),
            num_classes=self.num_classes,
            input_shape=self.input_shape,
            augment=self.augment,
            augment_val=self.augment_val,
            extra_test={k: v.to(device) for k, v in self.extra_test.items()},
            class_weights=None if self.class_weights is None else self.class_weights.to(device),
            input_quant=self.input_quant,
        )


def batches(
    split: Split,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: Augment | None = None,
    max_batches: int | None = None,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(x, y)`` mini-batches of a tensor-resident split.

    The permutation is drawn on the CPU from ``generator`` (reproducible across devices) and the
    augmentation, if any, is applied to each whole batch.
    """
    n = len(split)
    if shuffle:
        if generator is None:
            raise ValueError("shuffle=True needs a generator (reproducibility)")
        order = torch.randperm(n, generator=generator).to(split.x.device)
    else:
        order = None
    count = 0
    for start in range(0, n, batch_size):
        if max_batches is not None and count >= max_batches:
            return
        if order is None:
            xb, yb = split.x[start : start + batch_size], split.y[start : start + batch_size]
        else:
            idx = order[start : start + batch_size]
            xb, yb = split.x[idx], split.y[idx]
        if augment is not None:
            xb = augment(xb, generator if generator is not None else torch.Generator().manual_seed(0))
        count += 1
        yield xb, yb


def num_batches(split: Split, batch_size: int, max_batches: int | None = None) -> int:
    n = -(-len(split) // batch_size)
    return n if max_batches is None else min(n, max_batches)
