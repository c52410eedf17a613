"""The integer program of an exported network (docs/method.md §8.1): its tensors and operations, as
built by :func:`jpq.export.integer.integerize` and executed by the C code and :mod:`jpq.export.intref`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor, fx

from jpq.export.modules import Pact
from jpq.export.plan import ExportedLayer


@dataclass
class ITensor:
    """An integer activation tensor: codes of shape ``(C, H, W)`` (1-D and flat tensors use H = 1, W = 1)."""

    name: str
    shape: tuple[int, int, int]
    dtype: str  # "u8" | "i32"
    scale: float  # S: codes per real unit
    zp: int  # real value = (code + zp) / S
    vmax: int  # bound of |code + zp| (for the int32 overflow check)
    buffer: str = ""  # the tensor whose storage it shares (flatten/dropout/relu alias), else itself
    logits: bool = False  # the int32 logits of the output layer (signed, no clamp)

    @property
    def numel(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def nbytes(self) -> int:
        return self.numel * (1 if self.dtype == "u8" else 4)


@dataclass
class Block:
    """Rows ``[start, stop)`` of a layer at one weight precision, bit-packed (:mod:`jpq.export.pack`)."""

    bits: int
    start: int
    stop: int
    data: bytes
    padding_bits: int


@dataclass
class ConvOp:
    """Conv 2-D/1-D, depthwise conv or linear, with its requantization."""

    name: str
    kind: str  # conv | dw | linear
    x: ITensor
    y: ITensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    w_int: Tensor  # int64 (C', Cin', kh, kw) or (C', F)
    blocks: list[Block]
    bias: np.ndarray  # int32 B_c in units of 2^-bias_shift[c] output steps
    bias_shift: np.ndarray  # int8 t_c <= shift[c]
    mult: np.ndarray  # int32
    shift: np.ndarray  # int8
    qmax: int | None  # None: int32 logits (no clamp)

    @property
    def row_len(self) -> int:
        return int(self.w_int[0].numel())


@dataclass
class AddOp:
    """``y = floor(fl(min(fl(value_a[q_a] + value_b[q_b]), clip) * scale))`` in float32 (module docstring)."""

    name: str
    a: ITensor
    b: ITensor
    y: ITensor
    value_a: np.ndarray  # uint32 float32 bit patterns of q / S_a, q = 0..vmax_a
    value_b: np.ndarray
    scale_bits: int  # float32 S_out
    clip_bits: int  # float32 clip of the output PACT
    qmax: int


@dataclass
class PoolOp:
    name: str
    kind: str  # max | sum
    x: ITensor
    y: ITensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class IntProgram:
    """The integer network: input quantizer, ops in execution order, int32 logits in class order."""

    input: ITensor
    input_pact: Pact
    ops: list[ConvOp | AddOp | PoolOp] = field(default_factory=list)
    output: ITensor | None = None
    output_order: list[int] | None = None  # out[k] = logits[output_order[k]]
    layers: list[ExportedLayer] = field(default_factory=list)
    model: fx.GraphModule | None = None

    @property
    def num_outputs(self) -> int:
        assert self.output is not None
        return self.output.numel

    @property
    def logit_scale(self) -> int:
        """Codes per real unit of the int32 logits (a power of two)."""
        assert self.output is not None
        return int(self.output.scale)
