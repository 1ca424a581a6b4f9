"""glibc malloc thresholds fixed at start: memory freed after a large buffer goes back to the system.

glibc serves blocks of 128 KiB and more with ``mmap`` and returns them on ``free`` — until the first such
block is freed: then it raises its mmap threshold (and its trim threshold) to that block's size, up to
32 MiB, and later large buffers come from the heap, where the small objects allocated between them keep
the freed space from ever being returned. An OPC UA server encodes publish responses and decodes
CreateMonitoredItems requests of several MB, so a gateway with a subscribe-to-everything client kept
~15 MB more RSS than its live objects (200 units, ``bench/opcua_north.py``: 157.8 -> 140.8 MB).

Setting either threshold explicitly turns that adjustment off (``mallopt(3)``), so the daemon sets both to
glibc's default, 128 KiB, before anything big is allocated. A user who sets ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` in the unit's environment keeps their values; other C libraries (musl) are
left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: mallopt(3) parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's own default for both; what matters is that it is fixed
THRESHOLD_BYTES = 128 * 1024
ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap and trim thresholds at :data:`THRESHOLD_BYTES`; whether it did (idempotent)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in ENVIRONMENT):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        gnu_get_libc_version = libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    del gnu_get_libc_version
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1 and mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1
