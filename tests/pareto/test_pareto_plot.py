"""Pareto and architecture figures: what is drawn (artists) and that PNGs are written."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jpq.pareto.plot import fronts_figure, plot_arch, plot_fronts

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "method": ["joint"] * 4 + ["mixprec"] * 2 + ["fixed"] * 3,
        "w_bits": ["0,2,4,8"] * 4 + ["2,4,8"] * 2 + ["8", "4", "2"],
        "a_bits": ["2,4,8"] * 6 + ["8", "8", "8"],
        "size_kb": [2.9, 5.9, 30.0, 15.3, 20.3, 57.8, 77.3, 38.7, 19.4],
        "final_test_acc": [62.0, 72.8, 80.0, 81.9, 77.8, 85.8, 86.3, 85.4, 71.8],
        "mpic_cycles": [np.nan] * 9,
    })


def test_fronts_figure_content() -> None:
    fig = fronts_figure(_frame(), x="size_kb", y="final_test_acc", group_by="method", warmup_acc=86.1,
                        title="cifar10 / resnet8")
    ax = fig.axes[0]
    handles, labels = ax.get_legend_handles_labels()
    assert labels == ["joint", "mixprec", "w8a8", "w4a8", "w2a8", "FP warm-up (86.1 %)"]
    assert ax.get_xscale() == "log"
    assert ax.get_xlabel().startswith("Weight memory [kB]") and ax.get_ylabel() == "Test accuracy [%]"
    joint_line = handles[0]
    # the front line goes through the 3 front points sorted by size; (30 kB, 80 %) is dominated
    assert joint_line.get_xdata().tolist() == [2.9, 5.9, 15.3]
    assert joint_line.get_ydata().tolist() == [62.0, 72.8, 81.9]
    warm = handles[-1]
    assert warm.get_linestyle() == "--" and list(warm.get_ydata()) == [86.1, 86.1]
    assert ax.get_title() == "cifar10 / resnet8"
    lin = fronts_figure(_frame(), x="size_kb", y="final_test_acc", group_by="method", logx=False)
    assert lin.axes[0].get_xscale() == "linear"


def test_plot_fronts_writes_png(tmp_path: Path) -> None:
    out = plot_fronts(_frame(), x="size_kb", y="final_test_acc", group_by="method",
                      out_path=tmp_path / "f.png", logx=None, warmup_acc=None, title=None)
    assert out == tmp_path / "f.png" and out.read_bytes()[:8] == PNG_MAGIC
    # a metric nobody measured still gives a (labelled, empty) figure rather than a crash
    empty = plot_fronts(_frame(), x="mpic_cycles", out_path=tmp_path / "e.png")
    assert empty.read_bytes()[:8] == PNG_MAGIC


def test_plot_arch(tmp_path: Path) -> None:
    arch = {"layers": [
        {"name": "conv0", "group": 0, "op": "conv", "c_out": 16, "kept": 12,
         "w_bits_counts": {"0": 4, "2": 2, "4": 6, "8": 4}, "a_bits": 8},
        {"name": "conv1", "group": 1, "op": "conv", "c_out": 32, "kept": 32,
         "w_bits_counts": {"0": 0, "2": 10, "4": 12, "8": 10}, "a_bits": 4},
        {"name": "fc", "group": 2, "op": "linear", "c_out": 10, "kept": 10,
         "w_bits_counts": {"2": 0, "4": 0, "8": 10}, "a_bits": None},
    ]}
    out = plot_arch(arch, tmp_path / "arch.png", title="joint, strength 1e-6")
    assert out.read_bytes()[:8] == PNG_MAGIC
    with Image.open(out) as im:
        assert im.width > 100 and im.height > 100
    with pytest.raises(ValueError, match="no layers"):
        plot_arch({"layers": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="'fc' has no w_bits_counts"):
        plot_arch({"layers": [{"name": "fc", "c_out": 10}]}, tmp_path / "x.png")
