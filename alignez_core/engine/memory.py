"""Give memory that Python and torch have freed back to the operating system.

A fit runs big batches in a worker thread; glibc keeps what they freed in per-thread arenas, so
a long-running studio's resident size climbs with every fit though nothing leaks (measured: +60
MB per fit, flat across generations). `malloc_trim(0)` returns those free pages; elsewhere
(macOS, musl, Windows) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import cache


@cache
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Collect garbage, then hand glibc's free pages back; True when trimming was available."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
