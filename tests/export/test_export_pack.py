"""Bit-packing of integer weights (jpq.export.pack): golden bytes, round trips, the weights.bin writer."""

from __future__ import annotations

import numpy as np
import pytest

from jpq.export.pack import BinWriter, int_range, pack_bits, read_array, read_packed, unpack_bits


@pytest.mark.parametrize(
    ("values", "bits", "expected"),
    [
        # 2 bit: 1 -> 01, -1 -> 11, -2 -> 10, 0 -> 00; first value in the low bits of byte 0
        ([1, -1, -2, 0, 1], 2, bytes([0b00_10_11_01, 0b01])),
        # 4 bit: 7 -> 0111, -8 -> 1000, -1 -> 1111
        ([7, -8, -1], 4, bytes([0x87, 0x0F])),
        ([-128, 127, -1, 0], 8, bytes([0x80, 0x7F, 0xFF, 0x00])),
        # 3 bit (generic path): 011 100 111 -> stream 1,1,0, 0,0,1, 1,1,1 (LSB first)
        ([3, -4, -1], 3, bytes([0b11100011, 0b1])),
        ([-1], 1, bytes([0b1])),
        ([-32768, 1], 16, bytes([0x00, 0x80, 0x01, 0x00])),
    ],
)
def test_pack_golden_bytes(values: list[int], bits: int, expected: bytes) -> None:
    assert pack_bits(np.array(values), bits) == expected
    np.testing.assert_array_equal(unpack_bits(expected, bits, len(values)), values)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8, 16])
def test_pack_round_trip_random(bits: int) -> None:
    rng = np.random.default_rng(bits)
    lo, hi = int_range(bits)
    for n in (0, 1, 7, 8, 9, 1001):
        v = rng.integers(lo, hi + 1, size=n)
        data = pack_bits(v, bits)
        assert len(data) == (n * bits + 7) // 8
        np.testing.assert_array_equal(unpack_bits(data, bits, n), v)


def test_pack_padding_bits_are_zero_and_range_is_checked() -> None:
    data = pack_bits(np.array([-1, -1, -1]), 2)  # 6 bits used, 2 padding bits
    assert data == bytes([0b00111111])
    assert int_range(2) == (-2, 1) and int_range(8) == (-128, 127)
    with pytest.raises(ValueError, match="do not fit 2-bit"):
        pack_bits(np.array([2]), 2)
    with pytest.raises(ValueError, match="do not fit 4-bit"):
        pack_bits(np.array([-9]), 4)


def test_bin_writer_offsets_alignment_and_read_back() -> None:
    w = BinWriter()
    a = w.add_packed(np.array([1, -2, 0, -1, 1]), 2)  # 10 bits -> 2 bytes, 6 padding bits
    assert a == {"offset": 0, "nbytes": 2, "nbits": 10, "padding_bits": 6, "count": 5}
    b = w.add_packed(np.array([5, -3, 7]), 4)  # 12 bits -> 2 bytes, starts on the next byte
    assert (b["offset"], b["nbytes"], b["padding_bits"]) == (2, 2, 4)
    c = w.add_packed(np.array([9]), 8)
    assert c["offset"] == 4
    f = w.add_array(np.array([1.5, -2.25], dtype=np.float32), "float32")
    assert f["offset"] == 8 and f["nbytes"] == 8  # aligned from 5 to 8
    i = w.add_array(np.array([-7, 2**31 - 1]), "int32")
    assert i["offset"] == 16
    blob = w.getvalue()
    assert len(blob) == w.size == 24 and blob[5:8] == b"\0\0\0"
    np.testing.assert_array_equal(read_packed(blob, a, 2), [1, -2, 0, -1, 1])
    np.testing.assert_array_equal(read_packed(blob, b, 4), [5, -3, 7])
    np.testing.assert_array_equal(read_packed(blob, c, 8), [9])
    np.testing.assert_array_equal(read_array(blob, f), [1.5, -2.25])
    np.testing.assert_array_equal(read_array(blob, i), [-7, 2**31 - 1])
    assert blob[8:12] == np.float32(1.5).tobytes()  # little-endian float32
