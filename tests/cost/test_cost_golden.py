"""Golden values of the cost models: docs/method.md §5.6 (seed networks at w8/w4/w2, a8) and the single
layer check of §5.5, plus hand-derived per-layer values."""

from __future__ import annotations

import pytest
import torch

from jpq.cost import (
    evaluate_all,
    macs_per_layer,
    mpic_cycles,
    mpic_cycles_per_layer,
    mpic_energy_uj,
    ne16_cycles,
    ne16_cycles_per_layer,
    size_bits,
    size_bits_per_layer,
    uniform_spec,
)
from jpq.cost.bitops import bitops

# §5.6: (size kB at w8, w4, w2), (MPIC cycles), (NE16 cycles)
RESNET8_ROW = ((77.36, 38.68, 19.34), (5_953_158, 5_435_492, 5_000_653), (155_241, 104_361, 78_921))
DSCNN_ROW = ((22.02, 11.01, 5.50), (1_265_128, 1_155_117, 1_062_707), (204_838, 172_582, 156_454))
W_BITS = (8, 4, 2)


@pytest.mark.parametrize("net,row", [("resnet8", RESNET8_ROW), ("dscnn", DSCNN_ROW)])
def test_small_networks_match_table(seed_networks, net, row) -> None:
    sizes_kb, mpic, ne16 = row
    for i, w in enumerate(W_BITS):
        m = evaluate_all(seed_networks[net](w))
        assert round(m["size_kb"], 2) == pytest.approx(sizes_kb[i], abs=1e-9)
        assert round(m["mpic_cycles"]) == mpic[i]
        assert m["ne16_cycles"] == ne16[i]


def _sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits."""
    return float(f"{x:.{digits}g}")


def test_resnet18_matches_table_to_given_digits(resnet18) -> None:
    # (size kB, (MPIC, significant digits given), (NE16, digits)) of §5.6
    expected = {
        8: (11_262, (1.058e9, 4), (1.969e7, 4)),
        4: (5_631, (9.66e8, 3), (1.172e7, 4)),
        2: (2_815, (8.89e8, 3), (7.735e6, 4)),
    }
    for w, (size_kb, (mpic, d_mpic), (ne16, d_ne16)) in expected.items():
        m = evaluate_all(resnet18(w))
        assert round(m["size_kb"]) == size_kb  # 11,261.632 / 5,630.816 / 2,815.408 kB
        assert _sig(m["mpic_cycles"], d_mpic) == mpic
        assert _sig(m["ne16_cycles"], d_ne16) == ne16
    # weights-only parameter count of docs/benchmarks.md §4.3
    assert evaluate_all(resnet18(8))["size_bits"] == pytest.approx(11_261_632 * 8, abs=1e-3)


def test_resnet8_exact_bits_and_macs(resnet8) -> None:
    assert evaluate_all(resnet8(8))["size_bits"] == pytest.approx(618_880, abs=1e-3)
    assert evaluate_all(resnet8(4))["size_bits"] == pytest.approx(309_440, abs=1e-3)
    assert float(macs_per_layer(resnet8(8)).sum()) == 12_501_632
    # per-layer size = weights * 8 (docs/benchmarks.md §2.4 table)
    weights = [432, 2304, 2304, 4608, 9216, 512, 18432, 36864, 2048, 640]
    per_layer = size_bits_per_layer(resnet8(8)).double()
    assert torch.allclose(per_layer, torch.tensor(weights, dtype=torch.float64) * 8, rtol=1e-6)


def test_dscnn_exact_bits(dscnn) -> None:
    assert evaluate_all(dscnn(8))["size_bits"] == pytest.approx(22_016 * 8, abs=1e-3)
    # the reference depthwise formula is off only by its 1e-4 guard
    assert float(size_bits(dscnn(8))) == pytest.approx(22_016 * 8, rel=1e-6)


def test_ne16_per_layer_resnet8_w8(resnet8) -> None:
    expected = [25531, 25531, 25531, 12780, 23616, 4284, 11808, 22644, 3312, 204]
    assert ne16_cycles_per_layer(resnet8(8)).tolist() == expected


def test_ne16_per_layer_dscnn_w8_hand_derived(dscnn) -> None:
    # stem 10x4 = 3 passes 3x3 + 13 passes 1x1, n_sp = 9*2 = 18, Ko = 64 = 2 tiles, Ki = 1:
    #   3 * 18 * 2 * 355 + 13 * 18 * 2 * 119 = 38340 + 55692 = 94032
    # depthwise 3x3: 4 tiles of 16: iter = 31 + (6+16) + (6+128) + 2 + 25 + 13 = 227 -> 18 * 4 * 227 = 16344
    # pointwise 64->64: n_in = 4, 2 tiles: iter = 4 * (19+6+38+2) + 41 + 13 = 314 -> 18 * 2 * 314 = 11304
    # out 64->12: 4 * (19+6+18+2) + 21 + 13 = 214
    expected = [94032] + [16344, 11304] * 4 + [214]
    assert ne16_cycles_per_layer(dscnn(8)).tolist() == expected


def test_single_layer_check_of_5_5() -> None:
    spec = uniform_spec("c", "conv", (3, 3), (32, 32), 16, 16, 8)
    assert float(ne16_cycles([spec])) == 25_531


def test_float32_path_agrees_with_float64(resnet8, dscnn) -> None:
    for build in (resnet8, dscnn):
        for w in W_BITS:
            specs = build(w)  # float32 tensors from uniform_spec
            m = evaluate_all(specs)
            assert float(ne16_cycles(specs)) == m["ne16_cycles"]
            assert float(mpic_cycles(specs)) == pytest.approx(m["mpic_cycles"], rel=1e-6)
            assert float(size_bits(specs)) == pytest.approx(m["size_bits"], rel=1e-6)
            assert float(bitops(specs)) == pytest.approx(m["bitops"], rel=1e-6)


def test_bitops_and_energy_hand_values(resnet8) -> None:
    m = evaluate_all(resnet8(8))
    # bitops = MACs * a * w = 12,501,632 * 64 (the 1e-6 guard changes the 8th digit at most)
    assert m["bitops"] == pytest.approx(12_501_632 * 64, rel=1e-7)
    m4 = evaluate_all(resnet8(4, 4))
    assert m4["bitops"] == pytest.approx(12_501_632 * 16, rel=1e-7)
    # E = cycles / 250 MHz * 5.3825 mW, in microjoules
    assert mpic_energy_uj(5_953_158.0) == pytest.approx(5_953_158 / 250e6 * 5.3825e-3 * 1e6)
    assert mpic_energy_uj(250e6) == pytest.approx(5382.5)
    assert m["mpic_energy_uj"] == pytest.approx(mpic_energy_uj(m["mpic_cycles"]))
    assert m["size_kb"] == pytest.approx(m["size_bits"] / 8000)


def test_mpic_lut_per_activation_precision() -> None:
    # one 1x1 conv, 10 MACs per output channel pair; MACs = 10 * 8 * 4 * 4 = 1280 at every (a, w)
    lut = {2: {2: 6.5, 4: 4.0, 8: 2.2}, 4: {2: 3.9, 4: 3.5, 8: 2.1}, 8: {2: 2.5, 4: 2.3, 8: 2.1}}
    for a, row in lut.items():
        for w, macs_per_cycle in row.items():
            spec = uniform_spec("l", "conv", (1, 1), (4, 4), 10, 8, w, a)
            got = float(mpic_cycles_per_layer([spec]).double()[0])
            assert got == pytest.approx(1280 / macs_per_cycle, rel=1e-6)


def test_empty_network_costs_nothing() -> None:
    for f in (size_bits, bitops, mpic_cycles, ne16_cycles):
        assert float(f([])) == 0.0
