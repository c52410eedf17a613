"""Keep freed memory in the process for reuse (CPU training throughput).

PyTorch on the CPU allocates through the C library. glibc hands large blocks (activation tensors of a
few MB) straight back to the kernel when they are freed and maps fresh pages for the next step, so every
step pays page faults on memory it just released; the search step, with its extra per-precision
tensors, pays more than a float step. Raising the mmap and trim thresholds keeps those blocks in the
heap: on ResNet-8 (batch 32, 2 cores) a search step gets about 15 % faster, a float step about 10 %.
The resident size then stays at the peak of a step, which a training process reaches anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to this size come from the reusable heap; freed memory up to it stays in the process
THRESHOLD_BYTES = 1 << 30

_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap/trim thresholds once per process; False where that is not glibc (no change)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another C library without mallopt
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, THRESHOLD_BYTES))
    ok = bool(mallopt(_M_TRIM_THRESHOLD, THRESHOLD_BYTES)) and ok
    _done = ok
    return ok
