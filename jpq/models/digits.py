"""The embedded default's seed network: a small CNN for 8x8 handwritten digits.

Three 3x3 convs (BN + ReLU) and a linear classifier on the flattened 2x2 map, so the search sees a
stride, a flatten (Cin_eff = H*W*C_eff, docs/method.md §5.1) and a classifier. 15,248 weights:
15.25 kB at 8 bits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DigitsCNN(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        w1, w2 = width, 2 * width
        self.conv1 = nn.Conv2d(in_channels, w1, 3, padding=1, bias=False)  # 8x8
        self.bn1 = nn.BatchNorm2d(w1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(w1, w2, 3, stride=2, padding=1, bias=False)  # 4x4
        self.bn2 = nn.BatchNorm2d(w2)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(w2, w2, 3, padding=1, bias=False)  # 4x4
        self.bn3 = nn.BatchNorm2d(w2)
        self.relu3 = nn.ReLU()
        self.pool = nn.AvgPool2d(2)  # 2x2
        self.fc = nn.Linear(w2 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.fc(torch.flatten(self.pool(x), 1))
