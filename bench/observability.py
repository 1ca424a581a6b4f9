"""Benchmark: what observability costs — a /metrics scrape at 200 units, and the per-poll instrumentation.

* **scrape**: the collectors of ``/metrics`` over 200 real :class:`UnitSnapshot` objects and 200 Modbus
  endpoint counters (their latency histograms merged into the transport's), rendered to the Prometheus
  text format by ``Registry.render`` — the whole event-loop cost of one scrape (goal < 10 ms). p50/p99
  over 200 scrapes.
* **per request**: what a Modbus request now pays for its latency histogram (one ``observe``), and what
  an untraced control step pays for the tracing hooks (a span-context check per write), in µs.

* **poll loop**: a real gateway process (``bessgw run``) polling 200 simulated vendor_a containers at 10 Hz
  (the simulator in a child process, as in bench/modbus_poll.py), with one setpoint a second through the admin
  socket (each command: journal, a control step and 200 unit writes), three times: observability **off** (no
  ``[tracing]``, nobody scrapes) and **on** (``[tracing]`` at sample_ratio 1.0 exporting every command's trace
  to an OTLP/HTTP receiver in this process) with a ``/metrics`` scrape every 15 s (Prometheus' default; the
  goal is judged on this one) and every 1 s (a stress case). The ``[http]`` listener is configured in every
  run (idle when off): the bench reads the Modbus request counter from ``/metrics`` at the start and end of
  each window. CPU is the gateway process's (all its threads, the exporter's included) from /proc; per poll
  means per Modbus request. Goal: on costs ≤ 5 % more CPU per poll than off. Off and on alternate twice, 20 s
  windows, means reported; on a shared machine: differences of a few per cent are within its noise.

The last line is one JSON object. Run: ``.venv/bin/python bench/observability.py`` (about 5 minutes;
``--scrape-only`` for the first part alone).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

from modbus_poll import process_cpu_s, start_simulator  # this directory: the poll bench's simulator child
from opentelemetry import trace

from bessgw.daemon.admin import request, socket_path
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


POLL_UNITS = 200
POLL_RATE_HZ = 10.0
WARMUP_S = 8.0
MEASURE_S = 20.0
COMMAND_INTERVAL_S = 1.0
#: Prometheus' default scrape interval, and a stress case fifteen times as often
SCRAPE_INTERVALS_S = (15.0, 1.0)
#: off and on alternate this many times (one gateway process each); the figures are the means
ROUNDS = 2

GATEWAY_CONFIG = """
[gateway]
id = "bench-obs"
state_dir = "{state}"
log_level = "warning"
log_format = "json"
shutdown_grace_s = 5

[defaults]
poll_interval_s = {poll_s}
heartbeat_interval_s = 1.0

[http]
listen = "127.0.0.1:{http_port}"
{tracing}
{units}
"""


def _gc_counter() -> tuple[list[float], object]:
    """A gc callback that records every collection's duration (seconds) while installed."""
    pauses: list[float] = []
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    return pauses, callback


def scrape_bench() -> dict:
    """Render time of 200 scrapes; between two scrapes every unit gets a new snapshot and every endpoint new
    counts, as in a gateway polling at 10 Hz and scraped every 15 s (nothing cached by identity survives)."""
    snaps = snapshots()
    transport = modbus_transport()
    registry = build_registry([UnitCollector(lambda: snaps), TransportCollector(lambda: [transport])])
    durations, cpu = [], []
    size = 0
    pauses, callback = _gc_counter()
    gc.callbacks.append(callback)
    try:
        for scrape in range(SCRAPES):
            for i, snap in enumerate(snaps):  # what a poll does: a new telemetry, hence a new snapshot
                telemetry = dataclasses.replace(snap.telemetry, timestamp=time.time(), p_kw=100.0 + scrape,
                                                soc_pct=55.0 + scrape / 100)
                snaps[i] = dataclasses.replace(snap, telemetry=telemetry)
            for endpoint in transport.endpoints.values():
                endpoint.stats.requests += 150
                endpoint.latency.observe(0.003)
            started, started_cpu = time.perf_counter(), time.thread_time()
            size = len(registry.render())
            durations.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - started_cpu)
    finally:
        gc.callbacks.remove(callback)
    durations.sort()
    cpu.sort()
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
        "scrape_p99_ms": round(durations[int(0.99 * len(durations)) - 1] * 1e3, 2),
        "scrape_max_ms": round(durations[-1] * 1e3, 2),
        "scrape_cpu_p99_ms": round(cpu[int(0.99 * len(cpu)) - 1] * 1e3, 2), "scrape_bytes": size,
        "gc_collections": len(pauses), "gc_max_pause_ms": round(max(pauses, default=0.0) * 1e3, 2),
        "observe_us": round(observe_us, 3), "untraced_write_check_us": round(untraced_check_us, 3),
    }
    print(f"scrape of {UNITS} units + {UNITS} endpoints (render on the loop): p50 {result['scrape_p50_ms']} ms,"
          f" p99 {result['scrape_p99_ms']} ms (thread CPU p99 {result['scrape_cpu_p99_ms']} ms), max"
          f" {result['scrape_max_ms']} ms, {size} bytes (goal < 10 ms); {len(pauses)} GC collections in"
          f" {SCRAPES} scrapes and their updates, longest {result['gc_max_pause_ms']} ms")
    print(f"latency histogram observe: {result['observe_us']} µs; untraced write's span check:"
          f" {result['untraced_write_check_us']} µs")
    return result


class SpanSink:
    """An OTLP/HTTP receiver that only counts what it gets (requests and bytes): the gateway's export cost."""

    def __init__(self) -> None:
        self.requests = self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                sink.requests += 1
                sink.bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _requests_total(metrics_url: str) -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
    return sum(float(m.group(1)) for m in re.finditer(
        r'^bessgw_transport_requests_total\{transport="modbus"[^}]*\} (\S+)$', text, re.MULTILINE))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def poll_run(ports: list[int], tmp: Path, scrape_interval_s: float | None) -> dict:
    """One gateway process, observability on (scraped every ``scrape_interval_s``) or off (None): its CPU
    per Modbus request over MEASURE_S."""
    observed = scrape_interval_s is not None
    name = f"on_scrape_{scrape_interval_s:g}s" if observed else "off"
    state = tmp / name
    state.mkdir(parents=True)
    sink = SpanSink() if observed else None
    tracing = f"[tracing]\nenabled = true\nsample_ratio = 1.0\nendpoint = \"http://127.0.0.1:{sink.port}\"\n" \
        if sink is not None else ""
    units = "".join(f'[[units]]\nid = "u{i:03d}"\ndriver = "vendor_a"\n[units.modbus]\nhost = "127.0.0.1"\n'
                    f"port = {port}\nunit_id = 1\n\n" for i, port in enumerate(ports))
    config = state / "gateway.toml"
    http_port = _free_port()
    config.write_text(GATEWAY_CONFIG.format(state=state, http_port=http_port, poll_s=1.0 / POLL_RATE_HZ,
                                            tracing=tracing, units=units))
    log_path = state / "gateway.log"
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    with log_path.open("w") as log:
        gateway = subprocess.Popen([sys.executable, "-m", "bessgw.cli", "run", "--config", str(config)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        admin = socket_path(state)
        deadline = time.monotonic() + 90
        while True:  # every unit Good before anything is measured
            try:
                units_now = request(admin, {"cmd": "status"})["units"]
                if sum(u["quality"] == "good" for u in units_now) == len(ports):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"units not all Good within 90 s: see {log_path}")
            time.sleep(0.5)
        time.sleep(WARMUP_S)
        requests0, cpu0, wall0 = _requests_total(metrics_url), process_cpu_s(gateway.pid), time.monotonic()
        commands = scrapes = 0
        next_command = next_scrape = wall0
        while (now := time.monotonic()) < wall0 + MEASURE_S:
            if now >= next_command:  # alternate between two targets: every command moves all 200 units
                p_kw = 1000.0 if commands % 2 else 2000.0
                reply = request(admin, {"cmd": "setpoint", "p_kw": p_kw, "command_id": f"bench-{name}-{commands}"})
                assert reply.get("ok"), reply
                commands += 1
                next_command += COMMAND_INTERVAL_S
            if observed and now >= next_scrape:
                _requests_total(metrics_url)
                scrapes += 1
                next_scrape += scrape_interval_s
            time.sleep(max(0.0, min(next_command, next_scrape if observed else next_command) - time.monotonic()))
        cpu, wall = process_cpu_s(gateway.pid) - cpu0, time.monotonic() - wall0
        polls = _requests_total(metrics_url) - requests0
    finally:
        gateway.terminate()
        try:
            gateway.wait(30)
        except subprocess.TimeoutExpired:
            gateway.kill()
            gateway.wait()
        if sink is not None:
            sink.close()
    result = {"name": name, "cpu_cores": round(cpu / wall, 3), "requests_per_s": round(polls / wall, 1),
              "cpu_us_per_poll": round(cpu / max(polls, 1) * 1e6, 1), "commands": commands, "scrapes": scrapes}
    if sink is not None:
        result.update(otlp_exports=sink.requests, otlp_bytes=sink.bytes)
    print(f"  observability {name:16s}: {result['requests_per_s']:7.1f} requests/s (nominal"
          f" {len(ports) * POLL_RATE_HZ:.0f}), CPU {result['cpu_cores'] * 100:.1f} % of a core,"
          f" {result['cpu_us_per_poll']:.0f} µs/poll, {commands} commands, {scrapes} scrapes"
          + (f", {sink.requests} OTLP exports ({sink.bytes} bytes)" if sink is not None else ""))
    return result


def poll_bench() -> dict:
    child, ports = start_simulator(POLL_UNITS)
    try:
        runs: dict[str, list[dict]] = {}
        with tempfile.TemporaryDirectory(prefix="bessgw-bench-obs-") as tmp:
            for round_ in range(ROUNDS):  # alternating: a drift of the machine's load hits both alike
                for interval in (None, *SCRAPE_INTERVALS_S):
                    run = poll_run(ports, Path(tmp) / f"round-{round_}", interval)
                    runs.setdefault(run.pop("name"), []).append(run)
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    per_poll = {name: statistics.mean(r["cpu_us_per_poll"] for r in results) for name, results in runs.items()}
    overheads = {interval: per_poll[f"on_scrape_{interval:g}s"] / per_poll["off"] - 1.0
                 for interval in SCRAPE_INTERVALS_S}
    for interval, overhead in overheads.items():
        print(f"  overhead of tracing + a scrape every {interval:g} s, per poll: {overhead * 100:+.1f} %"
              f" (goal <= 5 %)")
    default = overheads[SCRAPE_INTERVALS_S[0]]
    return {"units": POLL_UNITS, "rate_hz": POLL_RATE_HZ, "measure_s": MEASURE_S, "rounds": ROUNDS,
            "cpu_us_per_poll_mean": {name: round(value, 1) for name, value in per_poll.items()}, "runs": runs,
            **{f"overhead_pct_scrape_{i:g}s": round(o * 100, 1) for i, o in overheads.items()},
            "goal_met": default <= 0.05, "loadavg": round(os.getloadavg()[0], 2)}


def main() -> None:
    result = {"bench": "observability", "scrape": scrape_bench()}
    if "--scrape-only" not in sys.argv:
        result["poll"] = poll_bench()
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
