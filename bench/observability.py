"""Benchmark: what observability costs — a /metrics scrape at 200 units, and the per-poll instrumentation.

* **scrape**: the collectors of ``/metrics`` over 200 real :class:`UnitSnapshot` objects and 200 Modbus
  endpoint counters (their latency histograms merged into the transport's), rendered to the Prometheus
  text format by ``Registry.render`` — the whole event-loop cost of one scrape (goal < 10 ms). p50/p99
  over 200 scrapes.
* **per request**: what a Modbus request now pays for its latency histogram (one ``observe``), and what
  an untraced control step pays for the tracing hooks (a span-context check per write), in µs.

Not measured here (yet): poll-loop CPU of a full gateway at 200 units with metrics + tracing on vs off
(bench/modbus_poll.py's set-up with ``[http]`` and ``[tracing]``). The last line is one JSON object.

Run: ``.venv/bin/python bench/observability.py`` (a few seconds).
"""

from __future__ import annotations

import json
import statistics
import time
from types import SimpleNamespace

from opentelemetry import trace

from bessgw.daemon.transport_metrics import TransportCollector
from bessgw.model import EffectiveLimits, Quality, Telemetry, UnitState
from bessgw.northbound.http.metrics import UnitCollector, build_registry
from bessgw.southbound.modbus.breaker import CircuitBreaker
from bessgw.southbound.modbus.endpoint import EndpointStats
from bessgw.timing import DurationHistogram
from bessgw.unit.snapshot import UnitSnapshot

UNITS = 200
SCRAPES = 200


def snapshots() -> list[UnitSnapshot]:
    now = time.time()
    limits = EffectiveLimits(2500.0, 2500.0, 1000.0, 5.0, 95.0, 500.0, -10.0, 45.0)
    return [UnitSnapshot(f"U{i:03d}", Telemetry(f"U{i:03d}", now, Quality.GOOD, UnitState.RUNNING, soc_pct=55.0,
                                                p_kw=100.0, q_kvar=0.0), None, limits, "", True)
            for i in range(UNITS)]


def modbus_transport() -> SimpleNamespace:
    endpoints = {}
    for i in range(UNITS):
        latency = DurationHistogram()
        for sample in (0.002, 0.004, 0.01):
            latency.observe(sample)
        endpoints[i] = SimpleNamespace(name=f"10.0.{i // 250}.{i % 250}:502", stats=EndpointStats(requests=1000),
                                       breaker=CircuitBreaker(5, 10.0), latency=latency)
    return SimpleNamespace(name="modbus", endpoints=endpoints)


def main() -> None:
    snaps = snapshots()
    transport = modbus_transport()
    registry = build_registry([UnitCollector(lambda: snaps), TransportCollector(lambda: [transport])])
    durations = []
    size = 0
    for _ in range(SCRAPES):
        started = time.perf_counter()
        size = len(registry.render())
        durations.append(time.perf_counter() - started)
    durations.sort()
    hist = DurationHistogram()
    n = 200_000
    started = time.perf_counter()
    for _ in range(n):
        hist.observe(0.0042)
    observe_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        trace.get_current_span().get_span_context().is_valid  # noqa: B018 (what an untraced write checks)
    untraced_check_us = (time.perf_counter() - started) / n * 1e6
    result = {
        "units": UNITS, "scrape_p50_ms": round(statistics.median(durations) * 1e3, 2),
        "scrape_p99_ms": round(durations[int(0.99 * len(durations)) - 1] * 1e3, 2), "scrape_bytes": size,
        "observe_us": round(observe_us, 3), "untraced_write_check_us": round(untraced_check_us, 3),
    }
    print(f"scrape of {UNITS} units + {UNITS} endpoints: p50 {result['scrape_p50_ms']} ms,"
          f" p99 {result['scrape_p99_ms']} ms, {size} bytes (goal < 10 ms)")
    print(f"latency histogram observe: {result['observe_us']} µs; untraced write's span check:"
          f" {result['untraced_write_check_us']} µs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
