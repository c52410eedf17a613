"""MLPerf Tiny ResNet-8 (16 filters) for CIFAR-10, as the paper's seed (benchmarks.md §2.4).

State-dict names follow the reference so checkpoints are interchangeable. 78,058 trainable parameters,
77,360 conv/linear weights (77.36 kB at 8 bits), 12,501,632 MACs. The 1x1 stride-2 shortcuts have a
bias and no BatchNorm; every 3x3 conv has padding 1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv1(x)))


class ResNet8(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.inputblock = ConvBlock(in_channels, 16, 1)
        self.convblock1 = ConvBlock(16, 16, 1)
        self.conv1 = nn.Conv2d(16, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu1 = nn.ReLU()
        self.convblock2 = ConvBlock(16, 32, 2)
        self.conv2y = nn.Conv2d(32, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv2x = nn.Conv2d(16, 32, 1, stride=2)
        self.relu2 = nn.ReLU()
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
        x = self.inputblock(x)
        y = self.bn1(self.conv1(self.convblock1(x)))
        x = self.relu1(x + y)
        y = self.bn2(self.conv2y(self.convblock2(x)))
        x = self.relu2(self.conv2x(x) + y)
        y = self.bn3(self.conv3y(self.convblock3(x)))
        x = self.relu3(self.conv3x(x) + y)
        return self.out(torch.flatten(self.avgpool(x), 1))
