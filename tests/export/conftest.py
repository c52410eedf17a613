"""Shared fixtures of the export tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``trainer=smoke`` digits run (in-process, as ``jpq search`` runs it), one per module."""
    from jpq.cli import main

    tmp = tmp_path_factory.mktemp("smoke_run")
    argv = list(sys.argv)
    try:
        args = ["trainer=smoke", "progress=false", f"hydra.run.dir={tmp}/run", f"cache_dir={tmp}/cache"]
        code = main(["search", *args])
    finally:
        sys.argv = argv  # the Hydra app rewrites sys.argv
    assert code == 0 and (tmp / "run" / "result.json").is_file()
    return tmp / "run"
