"""The allocator setting jpq makes for CPU training throughput (jpq.train.memory)."""

from __future__ import annotations

import platform
import sys

import pytest

from jpq.train.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="glibc only")
def test_keep_freed_memory_applies_once_on_glibc() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
