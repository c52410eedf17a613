"""The Hydra configs must reach a non-editable install (``pip install .``): every conf/ folder is a
package of pyproject.toml with its YAML files as package data."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_group_is_packaged() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    groups = {p.name for p in (ROOT / "conf").iterdir() if p.is_dir() and any(p.glob("*.yaml"))}
    packaged = {p.removeprefix("jpq.conf.") for p in tool["packages"] if p.startswith("jpq.conf.")}
    assert groups == packaged
    assert all(tool["package-data"][f"jpq.conf.{g}"] == ["*.yaml"] for g in groups)
    assert tool["package-dir"]["jpq.conf"] == "conf"


def test_c_kernels_are_package_data() -> None:
    """``jpq export --target c`` copies the kernel library from the installed package."""
    from jpq.export.cgen import KERNEL_FILES

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = tool["package-data"]["jpq.export"]
    kernels = ROOT / "jpq" / "export" / "ckernels"
    found = {p.name for pat in patterns for p in kernels.glob(pat.removeprefix("ckernels/"))}
    assert found == set(KERNEL_FILES)


def test_every_python_package_is_packaged() -> None:
    """A package of jpq/ missing from the list would be left out of a non-editable install."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "jpq").rglob("__init__.py")
        if "conf" not in p.relative_to(ROOT / "jpq").parts
    }
    assert "jpq.methods" in found
    assert found <= set(tool["packages"]), sorted(found - set(tool["packages"]))
