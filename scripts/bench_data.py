"""How much of a float ResNet-8 training epoch the data pipeline costs (target: <= 10 %).

Generates CIFAR-sized data (random images, in memory, no files), then times in one run

1. the loader alone: one epoch of ``batches(..., shuffle=True, augment=augment_cifar10)``
   (index shuffle + gather + batched rotation/shift/flip, docs/benchmarks.md §2.3);
2. a full training epoch: the same batches plus ResNet-8 forward, cross-entropy, backward and an Adam
   step (docs/benchmarks.md §2.5, batch 32);

and prints the loader's share of the training epoch. Usage::

    python scripts/bench_data.py [--n 2000] [--batch-size 32] [--repeats 2] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from jpq.data.augment import augment_cifar10
from jpq.data.base import Split, batches
from jpq.train.memory import keep_freed_memory


class _StandInResNet8(nn.Module):
    """The MLPerf Tiny ResNet-8 of docs/benchmarks.md §2.4 (used only if jpq.models.resnet8 is missing)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()

        def cbr(cin: int, cout: int, stride: int) -> nn.Sequential:
            conv = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU())

        self.stem = cbr(3, 16, 1)
        self.b1 = nn.Sequential(cbr(16, 16, 1), nn.Conv2d(16, 16, 3, 1, 1), nn.BatchNorm2d(16))
        self.b2 = nn.Sequential(cbr(16, 32, 2), nn.Conv2d(32, 32, 3, 1, 1), nn.BatchNorm2d(32))
        self.s2 = nn.Conv2d(16, 32, 1, 2, 0)
        self.b3 = nn.Sequential(cbr(32, 64, 2), nn.Conv2d(64, 64, 3, 1, 1), nn.BatchNorm2d(64))
        self.s3 = nn.Conv2d(32, 64, 1, 2, 0)
        self.pool = nn.AvgPool2d(8)
        self.out = nn.Linear(64, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.b1(x))
        x = torch.relu(self.s2(x) + self.b2(x))
        x = torch.relu(self.s3(x) + self.b3(x))
        return self.out(self.pool(x).flatten(1))


def _model() -> tuple[nn.Module, str]:
    try:
        from jpq.models.resnet8 import ResNet8  # type: ignore[import-not-found]
    except ImportError:
        return _StandInResNet8(), "stand-in ResNet-8 (jpq.models.resnet8 not available)"
    return ResNet8(), "jpq.models.resnet8.ResNet8"


def _loader_epoch(split: Split, batch_size: int, seed: int, device: torch.device) -> float:
    start = time.perf_counter()
    checksum = torch.zeros((), device=device)
    for xb, _ in batches(split, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                         augment=augment_cifar10):
        checksum += xb[0, 0, 0, 0]  # touch each batch (forces the work on lazy devices)
    if device.type == "cuda":
        torch.cuda.synchronize()
    float(checksum)
    return time.perf_counter() - start


def _train_epoch(model: nn.Module, opt: torch.optim.Optimizer, split: Split, batch_size: int, seed: int,
                 device: torch.device) -> float:
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    start = time.perf_counter()
    for xb, yb in batches(split, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                          augment=augment_cifar10):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    keep_freed_memory()  # as jpq search does
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="generated training images")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs of each kind (best is kept)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.n, 3, 32, 32), generator=g, dtype=torch.uint8).float().div_(255)
    y = torch.randint(0, 10, (args.n,), generator=g)
    split = Split(x, y).to(device)
    model, model_name = _model()
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)

    small = Split(split.x[: 4 * args.batch_size], split.y[: 4 * args.batch_size])  # warm-up
    _loader_epoch(small, args.batch_size, 0, device)
    _train_epoch(model, opt, small, args.batch_size, 0, device)

    reps = range(1, args.repeats + 1)
    loader_wall_s = min(_loader_epoch(split, args.batch_size, r, device) for r in reps)
    train_wall_s = min(_train_epoch(model, opt, split, args.batch_size, r, device) for r in reps)
    n_batches = -(-args.n // args.batch_size)
    share = loader_wall_s / train_wall_s
    print(f"model: {model_name}; device {device}; torch threads {torch.get_num_threads()}")
    print(f"data: {args.n} generated 3x32x32 images, batch {args.batch_size}, {n_batches} batches/epoch, "
          "augmentation rotation(15) + shift(±10 %) + hflip, batched")
    print(f"loader only    : {loader_wall_s:8.3f} s/epoch  ({1e3 * loader_wall_s / n_batches:6.2f} ms/batch)")
    print(f"training epoch : {train_wall_s:8.3f} s/epoch  ({1e3 * train_wall_s / n_batches:6.2f} ms/batch)")
    print(f"loader share of the training epoch: {100 * share:.1f} % (target <= 10 %): "
          f"{'OK' if share <= 0.10 else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
