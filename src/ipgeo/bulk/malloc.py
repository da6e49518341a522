"""Keep freed memory in the process during a bulk run, where glibc's malloc allows it."""

from __future__ import annotations

import ctypes
import sys

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
TRIM_THRESHOLD = 32 << 20
MMAP_THRESHOLD = 16 << 20


def keep_freed_memory() -> bool:
    """Let malloc reuse freed blocks of up to 16 MiB instead of handing them back to the kernel.

    A run allocates and frees a few MiB per batch (the bytes read, the rows joined). With
    glibc's defaults each such block is a fresh mapping or is trimmed off the heap again, so
    the kernel faults in and zeroes about 450 MB of pages per million log lines: a fifth of a
    run's CPU time. The setting is process-wide; the memory kept is what a batch uses anyway.
    Returns False where there is no glibc ``mallopt`` (musl, macOS), which changes nothing.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)) and bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    )
