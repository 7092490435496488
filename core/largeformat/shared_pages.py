"""Drop this process's mapping of shared-memory pages it has finished reading. No Ray.

A tile comes back from a replica as a zero-copy view of Ray's object store (a shared
mapping of /dev/shm). Reading it maps its pages into the router, and they stay in its
resident set after the object is freed: over a long job the store hands out pages all
over its arena, so the router's RSS grows by tens of MiB it no longer uses
(`bench/bench_router_memory.py`: RssShmem). `release_shared` tells the kernel the
process is done with the pages (`madvise(MADV_DONTNEED)`): for a shared mapping that
only drops this process's page table entries; the data stays in shared memory and a
later read maps it again. Private (heap) memory would be zeroed, so an array is released
only when /proc/self/maps shows its whole buffer inside one shared mapping.
"""

from __future__ import annotations

import ctypes
import mmap
import sys

import numpy as np

__all__ = ["release_shared"]

_MADV_DONTNEED = 4
_PAGE = mmap.PAGESIZE
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None


def release_shared(array: np.ndarray) -> bool:
    """Release the whole pages of `array`'s buffer if it lies in a shared mapping.

    The array (and views of it) stays valid: a later read maps the pages again.
    Returns whether pages were released (False off Linux, for private memory, or for a
    buffer too small to hold a whole page).
    """
    if _LIBC is None:
        return False
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    if not root.flags.c_contiguous or root.nbytes == 0:
        return False
    start = root.__array_interface__["data"][0]
    stop = start + root.nbytes
    first, last = -(-start // _PAGE) * _PAGE, stop // _PAGE * _PAGE
    if last <= first or not _in_shared_mapping(start, stop):
        return False
    return _LIBC.madvise(ctypes.c_void_p(first), ctypes.c_size_t(last - first), _MADV_DONTNEED) == 0


def _in_shared_mapping(start: int, stop: int) -> bool:
    """Whether [start, stop) lies inside one shared ('s' in its permissions) mapping."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, perms = line.split(maxsplit=2)[:2]
            low, _, high = span.partition("-")
            if int(low, 16) <= start < int(high, 16):
                return stop <= int(high, 16) and perms.endswith("s")
    return False
