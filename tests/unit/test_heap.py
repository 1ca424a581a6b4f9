"""glibc's thresholds fixed at start: large buffers freed after a bigger one go back to the system.

Each case runs in its own Python process (malloc settings are per process and cannot be undone). The
pattern is the one that cost an OPC UA gateway ~15 MB: one big buffer freed (glibc then raises its mmap
threshold), then many 1 MiB buffers with small long-lived objects between them, then the buffers freed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from bessgw.daemon.heap import fix_malloc_thresholds

pytestmark = pytest.mark.skipif(not (sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION")),
                                reason="glibc malloc only")

CHILD = textwrap.dedent("""
    import sys
    from bessgw.daemon.heap import fix_malloc_thresholds

    def rss_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    fixed = fix_malloc_thresholds() if sys.argv[1] == "fix" else False
    big = bytearray(8 << 20)
    del big
    keep, chunks = [], []
    for _ in range(64):
        chunks.append(bytearray(1 << 20))
        keep.append(bytearray(64 << 10))  # below the threshold: heap, alive between the chunks
    before = rss_mb()
    del chunks
    print(fixed, before - rss_mb())
""")


def returned_mb(mode: str, env: dict[str, str] | None = None) -> tuple[bool, float]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True,
                         timeout=60, env=env).stdout.split()
    return out[0] == "True", float(out[1])


def test_fixed_thresholds_return_freed_large_buffers_to_the_system() -> None:
    fixed, returned = returned_mb("fix")
    assert fixed
    assert returned > 48  # of the 64 MiB freed
    not_fixed, kept = returned_mb("plain")
    assert not not_fixed
    assert kept < 16  # the control: glibc's dynamic threshold kept them in the heap


def test_thresholds_from_the_environment_are_the_users_choice() -> None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    fixed, _ = returned_mb("fix", env)
    assert not fixed


def test_fixing_twice_is_harmless() -> None:
    if any(name in os.environ for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        pytest.skip("thresholds set by the environment")
    assert fix_malloc_thresholds() and fix_malloc_thresholds()
