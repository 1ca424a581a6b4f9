"""The daemon's collector policy once started: the start-up heap frozen, thresholds raised, cycles still freed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bessgw.daemon.heap import GC_THRESHOLDS, freeze_startup_heap


class _Node:
    """A reference cycle's member (a plain object: tracked by the cyclic collector)."""

    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def started_heap() -> Iterator[None]:
    """freeze_startup_heap() as the daemon calls it, undone afterwards for the rest of the test run."""
    thresholds, enabled = gc.get_threshold(), gc.isenabled()
    gc.enable()
    try:
        freeze_startup_heap()
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        if not enabled:
            gc.disable()


def test_start_up_freezes_the_heap_and_raises_the_young_threshold(started_heap: None) -> None:
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == GC_THRESHOLDS
    assert GC_THRESHOLDS[0] > 700  # above CPython's default, which a 200-unit control step reached


def test_cyclic_garbage_is_still_collected_within_the_threshold(started_heap: None) -> None:
    collected: list[bool] = []
    first, second = _Node(), _Node()
    first.other, second.other = second, first
    watch = weakref.ref(first, lambda _ref: collected.append(True))
    del first, second  # unreachable now, but only the cyclic collector can free them
    assert watch() is not None
    held = []
    for _ in range(3 * GC_THRESHOLDS[0]):  # bounded: three young thresholds' worth of live containers
        held.append([])
        if collected:
            break
    assert collected, "a reference cycle outlived three young-generation thresholds of allocations"
