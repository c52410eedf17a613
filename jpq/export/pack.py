"""Bit-packing of integer weights and the ``weights.bin`` container (docs/method.md §8, deployment).

Bit layout of one packed sub-block (documented again in ``manifest.json`` under ``bit_order``):

* the sub-block's integers are taken in C order of its weight tensor ``(rows, *filter_shape)``,
  i.e. row-major with the output channel slowest;
* integer ``i`` is stored as a ``p``-bit **two's complement** field occupying bits ``[i*p, (i+1)*p)``
  of the sub-block's bit stream, least significant bit first;
* bit ``j`` of the stream is bit ``j % 8`` (value ``1 << (j % 8)``) of byte ``j // 8``
  (**little-endian, LSB-first**): for 2-bit weights byte 0 holds ``w0 | w1<<2 | w2<<4 | w3<<6``;
* a sub-block occupies ``ceil(n*p/8)`` bytes and starts on a byte boundary; the unused high bits of its
  last byte are zero (the *padding*, reported separately from the exact ``n*p`` weight bits).

Floating-point and ``int32`` arrays (scales, biases) are stored little-endian, 4-byte aligned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: how ``manifest.json`` describes the packing (kept next to the code that implements it)
BIT_ORDER = (
    "each sub-block packs its integers in C order of its weight tensor (out_channel slowest); integer i is a "
    "w_bits-wide two's-complement field at bits [i*w_bits, (i+1)*w_bits) of the sub-block's bit stream, "
    "least significant bit first; stream bit j is bit (j % 8) of byte (j // 8) (little-endian, LSB-first; "
    "for 2-bit weights byte 0 = w0 | w1<<2 | w2<<4 | w3<<6); every sub-block starts on a byte boundary and "
    "the unused high bits of its last byte are zero"
)


def int_range(bits: int) -> tuple[int, int]:
    """The two's-complement range of a ``bits``-wide field, e.g. (-8, 7) for 4 bits."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack signed integers into ``ceil(n*bits/8)`` bytes (layout in the module docstring).

    Raises ``ValueError`` when a value does not fit a ``bits``-wide two's-complement field.
    """
    if not 1 <= bits <= 32:
        raise ValueError(f"cannot pack {bits}-bit integers (1..32 supported)")
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if v.size == 0:
        return b""
    lo, hi = int_range(bits)
    if int(v.min()) < lo or int(v.max()) > hi:
        raise ValueError(f"values in [{int(v.min())}, {int(v.max())}] do not fit {bits}-bit two's complement")
    u = (v & ((1 << bits) - 1)).astype(np.uint64)  # two's complement, low `bits` bits
    if bits == 8:
        return u.astype(np.uint8).tobytes()
    if 8 % bits == 0:  # 1, 2, 4 bits: 8/bits fields per byte, first field in the low bits
        per = 8 // bits
        pad = (-u.size) % per
        u = np.concatenate([u, np.zeros(pad, dtype=np.uint64)]).reshape(-1, per)
        shifts = (np.arange(per, dtype=np.uint64) * np.uint64(bits)).reshape(1, -1)
        return (u << shifts).sum(axis=1).astype(np.uint8).tobytes()
    # generic width: expand to single bits, LSB first, then pack little-endian
    stream = ((u.reshape(-1, 1) >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    return np.packbits(stream.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes | np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``count`` signed integers (int64) from packed bytes."""
    if not 1 <= bits <= 32:
        raise ValueError(f"cannot unpack {bits}-bit integers (1..32 supported)")
    raw = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    need = (count * bits + 7) // 8
    if raw.size < need:
        raise ValueError(f"{count} {bits}-bit integers need {need} bytes, got {raw.size}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    stream = np.unpackbits(raw[:need], bitorder="little")[: count * bits].reshape(count, bits)
    u = (stream.astype(np.int64) << np.arange(bits, dtype=np.int64)).sum(axis=1)
    return np.where(u >= (1 << (bits - 1)), u - (1 << bits), u)


@dataclass
class BinWriter:
    """Accumulates ``weights.bin``: packed sub-blocks and aligned little-endian arrays, with offsets."""

    chunks: list[bytes] = field(default_factory=list)
    size: int = 0

    def align(self, n: int) -> None:
        pad = (-self.size) % n
        if pad:
            self.chunks.append(b"\0" * pad)
            self.size += pad

    def add_packed(self, values: np.ndarray, bits: int) -> dict[str, Any]:
        """Append one packed sub-block; returns its entry (offset, bytes, exact bits, padding bits)."""
        data = pack_bits(values, bits)
        entry = {
            "offset": self.size,
            "nbytes": len(data),
            "nbits": int(np.asarray(values).size) * bits,
            "padding_bits": 8 * len(data) - int(np.asarray(values).size) * bits,
            "count": int(np.asarray(values).size),
        }
        self.chunks.append(data)
        self.size += len(data)
        return entry

    def add_array(self, values: np.ndarray, dtype: str) -> dict[str, Any]:
        """Append a little-endian ``float32``/``int32`` array at a 4-byte aligned offset."""
        if dtype not in ("float32", "int32"):
            raise ValueError(f"unsupported array dtype {dtype}")
        self.align(4)
        arr = np.ascontiguousarray(np.asarray(values).reshape(-1), dtype=np.dtype(dtype).newbyteorder("<"))
        data = arr.tobytes()
        entry = {"offset": self.size, "nbytes": len(data), "dtype": dtype, "count": int(arr.size)}
        self.chunks.append(data)
        self.size += len(data)
        return entry

    def getvalue(self) -> bytes:
        return b"".join(self.chunks)


def read_array(blob: bytes, entry: dict[str, Any]) -> np.ndarray:
    """Read back an array written by :meth:`BinWriter.add_array`."""
    dt = np.dtype(entry["dtype"]).newbyteorder("<")
    return np.frombuffer(blob, dtype=dt, count=entry["count"], offset=entry["offset"]).astype(entry["dtype"])


def read_packed(blob: bytes, entry: dict[str, Any], bits: int) -> np.ndarray:
    """Read back the integers of a sub-block written by :meth:`BinWriter.add_packed`."""
    start = entry["offset"]
    return unpack_bits(
        np.frombuffer(blob, dtype=np.uint8, count=entry["nbytes"], offset=start), bits, entry["count"]
    )
