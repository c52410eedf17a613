"""MLPerf Tiny ResNet-8 (16 filters) for CIFAR-10, the paper's CIFAR seed (docs/benchmarks.md §2.4).

State-dict names follow the reference so its checkpoints load unchanged. 78,058 trainable parameters,
77,360 conv/linear weights (77.36 kB at 8 bits), 12,501,632 MACs on a 3x32x32 input.
Reference quirks kept (docs/benchmarks.md §8): `conv1`, `conv2y`, `conv3y` have a bias although a BN
follows; the 1x1 stride-2 shortcuts `conv2x`, `conv3x` have a bias and no BN.

The graph is kept simple for torch.fx conversion (search/): ReLU as separate, non-inplace modules, every BN
fed by its conv alone, residual adds as `a + b`, pooling as a module, `torch.flatten(x, 1)`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Reference `ConvBlock`: 3x3 conv (no bias, pad 1), BN, ReLU (docs/benchmarks.md §2.4 rows 1/2/4/7)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv1(x)))


class ResNet8(nn.Module):
    """ResNet-8 of docs/benchmarks.md §2.4: a stem, three residual stages at 32², 16², 8² (16/32/64 channels).

    Init as the reference: kaiming-normal (fan_in, ReLU gain) on every conv and on the Linear; BN and
    biases keep PyTorch defaults. `AvgPool2d(8)` ties the input to 32x32 pixels.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.inputblock = ConvBlock(in_channels, 16, 1)
        # stage 1, identity shortcut
        self.convblock1 = ConvBlock(16, 16, 1)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        # stage 2, 1x1 stride-2 shortcut
        self.convblock2 = ConvBlock(16, 32, 2)
        self.conv2y = nn.Conv2d(32, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv2x = nn.Conv2d(16, 32, 1, stride=2)
        self.relu2 = nn.ReLU()
        # stage 3, 1x1 stride-2 shortcut
        self.convblock3 = ConvBlock(32, 64, 2)
        self.conv3y = nn.Conv2d(64, 64, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(64)
        self.conv3x = nn.Conv2d(32, 64, 1, stride=2)
        self.relu3 = nn.ReLU()
        self.avgpool = nn.AvgPool2d(8)
        self.out = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.inputblock(x)  # 16x32x32
        y = self.bn1(self.conv1(self.convblock1(x)))
        x = self.relu1(x + y)  # 16x32x32
        y = self.bn2(self.conv2y(self.convblock2(x)))
        x = self.relu2(self.conv2x(x) + y)  # 32x16x16
        y = self.bn3(self.conv3y(self.convblock3(x)))
        x = self.relu3(self.conv3x(x) + y)  # 64x8x8
        return self.out(torch.flatten(self.avgpool(x), 1))  # logits
