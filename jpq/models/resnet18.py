"""ResNet-18 for 64-px Tiny ImageNet (benchmarks.md §4.3): 3x3 stride-1 stem, no max-pool, 200 classes.

Stages run at 64², 32², 16², 8²; 1x1 conv + BN projections where the stride or width changes.
11,271,432 trainable parameters, 11,261,632 conv/linear weights, 2,221,772,800 MACs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu2 = nn.ReLU()
        self.project = stride != 1 or c_in != c_out
        if self.project:
            self.downsample = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)
            self.bn_ds = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        short = self.bn_ds(self.downsample(x)) if self.project else x
        return self.relu2(y + short)


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        widths = (64, 128, 256, 512)
        c_in = 64
        for s, w in enumerate(widths, start=1):
            stride = 1 if s == 1 else 2
            setattr(self, f"bb_{s}_0", BasicBlock(c_in, w, stride))
            setattr(self, f"bb_{s}_1", BasicBlock(w, w, 1))
            c_in = w
        self.avg_pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        for s in range(1, 5):
            x = getattr(self, f"bb_{s}_1")(getattr(self, f"bb_{s}_0")(x))
        return self.avg_pool(x)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 200, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.backbone = Backbone()
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.backbone(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(x, 1))
