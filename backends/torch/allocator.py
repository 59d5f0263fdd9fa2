"""Keeping freed CPU memory in the process, so that forwards do not page-fault.

A forward allocates and frees the same large temporaries every call. glibc's malloc hands
blocks above its mmap threshold back to the kernel on free, and trims the heap when its free
top grows past the trim threshold, so the next forward faults those pages in again and the
kernel zero-fills every one: on the seed circuit (784 folds, batch 256) that was ~7000 page
faults and about as much system time as the whole computation. Raising both thresholds once
makes malloc reuse the blocks (as torch's CUDA caching allocator does on GPUs).

This changes a process-wide setting, so it is applied once, only on glibc, never when the
user already tunes malloc through MALLOC_* environment variables, and can be turned off with
CIRKIT_IR_MALLOC_TUNING=0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raises glibc's trim and mmap thresholds (once per process); returns whether applied."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("CIRKIT_IR_MALLOC_TUNING", "1") == "0":
        return False
    if any(k in os.environ for k in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1
    ok = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1 and ok
    _applied = ok
    return ok
