"""Reference spec lists of the seed networks, built by hand from docs/benchmarks.md's layer tables.

Each fixture returns a builder ``(w_bits, a_bits=8) -> list[LayerSpec]``: every channel at ``w_bits``,
every input (including the network input) at ``a_bits``, ``cin_eff = c_in``; the linear layer after the
global average pool has ``c_in = C``. These are the networks of docs/method.md §5.6.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jpq.cost.spec import LayerSpec, uniform_spec

Layer = tuple[str, str, tuple[int, int], tuple[int, int], int, int]  # name, op, kernel, out_hw, c_in, c_out
Builder = Callable[..., list[LayerSpec]]

#: ResNet-8, CIFAR-10 3x32x32 (docs/benchmarks.md §2.4), in the order of the §5.6 per-layer NE16 values
RESNET8: list[Layer] = [
    ("stem", "conv", (3, 3), (32, 32), 3, 16),
    ("convblock1", "conv", (3, 3), (32, 32), 16, 16),
    ("conv1", "conv", (3, 3), (32, 32), 16, 16),
    ("convblock2", "conv", (3, 3), (16, 16), 16, 32),
    ("conv2y", "conv", (3, 3), (16, 16), 32, 32),
    ("conv2x", "conv", (1, 1), (16, 16), 16, 32),
    ("convblock3", "conv", (3, 3), (8, 8), 32, 64),
    ("conv3y", "conv", (3, 3), (8, 8), 64, 64),
    ("conv3x", "conv", (1, 1), (8, 8), 32, 64),
    ("fc", "linear", (1, 1), (1, 1), 64, 10),
]


def _dscnn() -> list[Layer]:
    """DS-CNN, GSC 1x49x10 (docs/benchmarks.md §3.4): stem (10,4)/s2 -> 25x5, four dw3x3 + pw1x1, fc."""
    layers: list[Layer] = [("stem", "conv", (10, 4), (25, 5), 1, 64)]
    for i in range(1, 5):
        layers.append((f"depthwise{i}", "dw", (3, 3), (25, 5), 64, 64))
        layers.append((f"pointwise{i}", "conv", (1, 1), (25, 5), 64, 64))
    layers.append(("out", "linear", (1, 1), (1, 1), 64, 12))
    return layers


def _resnet18_tin() -> list[Layer]:
    """ResNet-18 with the 3x3/s1 stem and no max-pool, 64-px input (docs/benchmarks.md §4.3)."""
    layers: list[Layer] = [("conv1", "conv", (3, 3), (64, 64), 3, 64)]
    for b in range(2):
        layers.append((f"bb_1_{b}.conv1", "conv", (3, 3), (64, 64), 64, 64))
        layers.append((f"bb_1_{b}.conv2", "conv", (3, 3), (64, 64), 64, 64))
    c, hw = 64, 64
    for stage in range(2, 5):
        c2, hw = 2 * c, hw // 2
        layers += [
            (f"bb_{stage}_0.conv1", "conv", (3, 3), (hw, hw), c, c2),
            (f"bb_{stage}_0.conv2", "conv", (3, 3), (hw, hw), c2, c2),
            (f"bb_{stage}_0.downsample", "conv", (1, 1), (hw, hw), c, c2),
            (f"bb_{stage}_1.conv1", "conv", (3, 3), (hw, hw), c2, c2),
            (f"bb_{stage}_1.conv2", "conv", (3, 3), (hw, hw), c2, c2),
        ]
        c = c2
    layers.append(("fc", "linear", (1, 1), (1, 1), 512, 200))
    return layers


DSCNN = _dscnn()
RESNET18_TIN = _resnet18_tin()


def build(layers: list[Layer], w_bits: int, a_bits: int = 8) -> list[LayerSpec]:
    return [uniform_spec(n, op, k, hw, ci, co, w_bits, a_bits) for n, op, k, hw, ci, co in layers]  # type: ignore[arg-type]


@pytest.fixture
def resnet8() -> Builder:
    return lambda w_bits, a_bits=8: build(RESNET8, w_bits, a_bits)


@pytest.fixture
def dscnn() -> Builder:
    return lambda w_bits, a_bits=8: build(DSCNN, w_bits, a_bits)


@pytest.fixture
def resnet18() -> Builder:
    return lambda w_bits, a_bits=8: build(RESNET18_TIN, w_bits, a_bits)


@pytest.fixture
def seed_networks() -> dict[str, Builder]:
    return {
        "resnet8": lambda w, a=8: build(RESNET8, w, a),
        "dscnn": lambda w, a=8: build(DSCNN, w, a),
        "resnet18": lambda w, a=8: build(RESNET18_TIN, w, a),
    }
