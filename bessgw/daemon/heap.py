"""The daemon's heap policy: glibc malloc thresholds fixed at start (memory freed after a large buffer goes
back to the system), and the garbage collector tuned once started (:func:`freeze_startup_heap`).

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
import gc
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


#: collector thresholds once started: a young collection only after this many net container allocations
#: (CPython's default, 700, is reached inside every control step that writes 200 units, whose in-flight
#: requests then get walked and promoted until a full collection), then CPython's ratios between generations
GC_THRESHOLDS = (50_000, 20, 20)


def freeze_startup_heap() -> None:
    """Move everything start-up allocated (modules, plugins, config, the address space: most of the heap) out
    of the garbage collector's reach: its full collections then scan only what was allocated since. Without
    it a full collection walks the whole heap, a pause of tens of milliseconds in the event loop at random
    moments (a scrape, a control step) on a 200-unit gateway.

    Then raise the collection thresholds (:data:`GC_THRESHOLDS`). The gateway's objects die by reference
    counting; with the default young threshold a 200-unit gateway (10 Hz polling, a client subscribed to
    everything, two OPC UA SetPower a second) ran ~32 young, 3 middle and 0.25 full collections a second,
    10-15 % of a command's time to its last register write, full-collection pauses of 14 ms on a quiet
    machine and up to 120 ms on a loaded one (``bench/scale.py --opcua-subscriber``; with these thresholds
    SetPower p99 26 ms instead of 34 ms in alternating quiet runs). Only cyclic garbage waits longer,
    bounded by the threshold.

    Once, at start-up only. Not after a reload: what a replaced config left in reference cycles would be
    frozen for good, a few objects per reload. (Units added by a reload are frozen by the OPC UA server,
    which holds most of their objects.)"""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
