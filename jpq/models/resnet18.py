"""ResNet-18 for 64-px Tiny ImageNet, the paper's TIN seed (docs/benchmarks.md §4.3, `std_head=False`).

Standard BasicBlock x [2, 2, 2, 2] at widths 64/128/256/512, except the stem: a 3x3 stride-1 conv and no
max-pool, so the stages run at 64², 32², 16², 8². A 1x1 conv + BN projection replaces the identity shortcut
where the stride or width changes; every conv is bias-free. 11,271,432 trainable parameters, 11,261,632
conv/linear weights (11.26 MB at 8 bits), 2,221,772,800 MACs on a 3x64x64 input.

The graph is kept simple for torch.fx conversion (search/): ReLU as separate, non-inplace modules, every BN
fed by its conv alone, residual adds as `a + b`, pooling as a module, `torch.flatten(x, 1)`. The only
Python branch (`self.project`) is on a constant set at construction, so tracing resolves it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

WIDTHS = (64, 128, 256, 512)
"""Output channels of the four stages (docs/benchmarks.md §4.3)."""


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN, ReLU between and after the residual add; a 1x1 conv + BN shortcut when needed."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.project = stride != 1 or in_channels != out_channels
        if self.project:
            self.downsample = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.bn_ds = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        shortcut = self.bn_ds(self.downsample(x)) if self.project else x
        return self.relu2(y + shortcut)


class Backbone(nn.Module):
    """The four stages `bb_{stage}_{block}` and the global average pool, named as the reference."""

    def __init__(self) -> None:
        super().__init__()
        in_channels = WIDTHS[0]
        for stage, width in enumerate(WIDTHS, start=1):
            stride = 1 if stage == 1 else 2
            setattr(self, f"bb_{stage}_0", BasicBlock(in_channels, width, stride))
            setattr(self, f"bb_{stage}_1", BasicBlock(width, width, 1))
            in_channels = width
        self.avg_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        for stage in range(1, len(WIDTHS) + 1):
            x = getattr(self, f"bb_{stage}_0")(x)
            x = getattr(self, f"bb_{stage}_1")(x)
        return self.avg_pool(x)  # 512 x 1 x 1


class ResNet18(nn.Module):
    """ResNet-18 with the reduced 64-px head of docs/benchmarks.md §4.3.

    Init as the reference: kaiming-normal (fan_out, ReLU gain) on every conv; BN gamma 1, beta 0; `fc` keeps
    PyTorch's default init. `AdaptiveAvgPool2d` lets any input resolution through.
    """

    def __init__(self, num_classes: int = 200, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.relu = nn.ReLU()
        self.backbone = Backbone()
        self.fc = nn.Linear(WIDTHS[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))  # logits
