"""MLPerf Tiny DS-CNN (64 filters) for 12-class KWS, the paper's GSC seed (docs/benchmarks.md §3.4).

Input (1, 49, 10) MFCC (time x coefficient). 23,756 trainable parameters, 22,016 conv/linear weights
(22.0 kB at 8 bits), 2,656,768 MACs. Every conv has a bias; PyTorch default init.
BatchNorm momentum is 0.99 in PyTorch's sense (running = 0.01 old + 0.99 batch): a literal copy of the Keras
value, so the running statistics track the last batches. Kept for faithfulness (docs/benchmarks.md §3.4, §8).

The graph is kept simple for torch.fx conversion (search/): ReLU as separate, non-inplace modules, every BN
fed by its conv alone, pooling as a module, `torch.flatten(x, 1)`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

BN_MOMENTUM = 0.99
"""PyTorch-sense momentum of every BN (weight of the new batch statistic), docs/benchmarks.md §3.4."""


class DSCNN(nn.Module):
    """DS-CNN of docs/benchmarks.md §3.4: a (10,4)/s2 input conv then four depthwise-separable blocks at 25x5.

    `width` is the filter count (64 in the reference); the fixed `AvgPool2d((25, 5))` ties the input to
    49x10.
    """

    def __init__(self, num_classes: int = 12, in_channels: int = 1, width: int = 64) -> None:
        super().__init__()
        self.inputlayer = nn.Conv2d(in_channels, width, (10, 4), stride=(2, 2), padding=(5, 1))
        self.bn = nn.BatchNorm2d(width, momentum=BN_MOMENTUM)
        self.relu = nn.ReLU()
        self.dropout1 = nn.Dropout(0.2)
        for i in range(1, 5):
            setattr(self, f"depthwise{i}", nn.Conv2d(width, width, 3, padding=1, groups=width))
            setattr(self, f"bn{i}1", nn.BatchNorm2d(width, momentum=BN_MOMENTUM))
            setattr(self, f"relu{i}1", nn.ReLU())
            setattr(self, f"pointwise{i}", nn.Conv2d(width, width, 1))
            setattr(self, f"bn{i}2", nn.BatchNorm2d(width, momentum=BN_MOMENTUM))
            setattr(self, f"relu{i}2", nn.ReLU())
        self.dropout2 = nn.Dropout(0.4)
        self.avgpool = nn.AvgPool2d((25, 5))
        self.out = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.dropout1(self.relu(self.bn(self.inputlayer(x))))  # width x 25 x 5
        x = self.relu11(self.bn11(self.depthwise1(x)))
        x = self.relu12(self.bn12(self.pointwise1(x)))
        x = self.relu21(self.bn21(self.depthwise2(x)))
        x = self.relu22(self.bn22(self.pointwise2(x)))
        x = self.relu31(self.bn31(self.depthwise3(x)))
        x = self.relu32(self.bn32(self.pointwise3(x)))
        x = self.relu41(self.bn41(self.depthwise4(x)))
        x = self.relu42(self.bn42(self.pointwise4(x)))
        x = self.avgpool(self.dropout2(x))  # width x 1 x 1
        return self.out(torch.flatten(x, 1))  # logits
