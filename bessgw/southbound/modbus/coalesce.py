"""Read planning: turn the spans a driver wants into the fewest Modbus requests.

Polling 200 containers at 10 Hz is paid per request (a round trip, a frame to build and parse on each
side), not per register, so spans that touch or overlap are merged, and a gap of at most ``max_gap``
unwanted registers is read through when that saves a request. A request never exceeds
``max_registers`` (125, the protocol limit for function 3). Gaps default to 0 because many controllers
answer "illegal data address" for registers outside their map.
"""

from __future__ import annotations

from collections.abc import Iterable

from bessgw.plugin.modbus import MAX_READ_REGISTERS, RegisterSpan


def plan_reads(
    spans: Iterable[RegisterSpan], max_registers: int = MAX_READ_REGISTERS, max_gap: int = 0
) -> list[RegisterSpan]:
    """The requests that cover every span, in address order.

    Greedy over the sorted spans, which is optimal for this interval-cover problem: a span joins the open
    request while the request stays within ``max_registers`` and the hole before it is ``<= max_gap``.
    A single span longer than ``max_registers`` is split.
    """
    if not 1 <= max_registers <= MAX_READ_REGISTERS:
        raise ValueError(f"max_registers must be 1..{MAX_READ_REGISTERS} (got {max_registers})")
    requests: list[RegisterSpan] = []
    start = end = -1
    for span in sorted(spans, key=lambda s: (s.address, s.end)):
        if start >= 0 and span.address <= end + max_gap and max(end, span.end) - start <= max_registers:
            end = max(end, span.end)
            continue
        if start >= 0 and span.address < end:  # overlaps the open request but would make it too long
            if span.end <= end:
                continue
            span = RegisterSpan(end, span.end - end)
        if start >= 0:
            requests.append(RegisterSpan(start, end - start))
        start, end = span.address, span.end
        while end - start > max_registers:  # one span too long for a single request
            requests.append(RegisterSpan(start, max_registers))
            start += max_registers
    if start >= 0:
        requests.append(RegisterSpan(start, end - start))
    return requests
