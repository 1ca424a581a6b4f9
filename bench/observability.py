"""Benchmark: what observability costs — a /metrics scrape at 200 units, and the per-poll instrumentation.

* **scrape**: the collectors of ``/metrics`` over 200 :class:`UnitSnapshot` objects and 200 Modbus endpoint
  counters (their latency histograms merged into the transport's), rendered by ``Registry.render`` — the
  whole event-loop cost of one scrape (goal < 10 ms). p50/p99/max over 200 scrapes, wall and thread CPU
  time, and the garbage collections that ran meanwhile. Between two scrapes every unit gets a new snapshot
  and every endpoint new counts, as in a gateway that polls at 10 Hz (nothing cached survives by identity).
* **per request**: what a Modbus request pays for its latency histogram (one ``observe``), and what an
  untraced control step pays for the tracing hooks (a span-context check per write), in µs.

* **poll loop**: a real gateway process (``bessgw run``) polling 200 simulated vendor_a containers at 10 Hz
  (the simulator in a child process, as in bench/modbus_poll.py), with one setpoint a second through the admin
  socket (each command: journal, a control step and 200 unit writes). Observability **off** (no
  ``[tracing]``, scraped only at the window's edges to count requests) and **on** (``[tracing]`` at
  sample_ratio 1.0 exporting every command's trace to an OTLP/HTTP receiver in this process, and a
  ``/metrics`` scrape every 15 s, Prometheus' default); ``--stress`` adds on with a scrape every 1 s. CPU is
  the gateway process's (all its threads, the exporter's included) from /proc; per poll means per Modbus
  request. Off and on run **side by side**, ``--pairs`` times (default 5): in each 15 s window an off and an
  on gateway, each over its own 200 simulated units, are measured over the same seconds, so whatever else
  loads this shared machine loads both alike (windows one after another differed by up to 50 % under a
  load of 10). The overhead is the **median of the pairwise ratios** on/off, with their min/max and IQR —
  the spread says how far the noise still goes. Goal: ≤ 5 %. The on gateways' scrapes also give a live
  gateway's scrape cost twice: the render time on its event loop (``Server-Timing``) and the wall time seen
  by the client.

The last line is one JSON object. Run: ``.venv/bin/python bench/observability.py`` (about 6 minutes with 5
pairs; ``--scrape-only`` for the first part alone, ``--pairs N``, ``--stress``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
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
WARMUP_S = 5.0
MEASURE_S = 15.0
COMMAND_INTERVAL_S = 1.0
#: Prometheus' default scrape interval (the goal is judged on it); ``--stress`` adds a run scraped every 1 s
SCRAPE_INTERVAL_S = 15.0
STRESS_SCRAPE_INTERVAL_S = 1.0
#: windows with an off and an on gateway side by side
PAIRS = 5

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


#: the gateway's thread CPU time of each render (Server-Timing), for the live-scrape figures
_RENDER_CPU_S: list[float] = []


def _scrape(metrics_url: str) -> tuple[float, float, float]:
    """One scrape: (Modbus requests so far, wall time seen by this client in s, render time on the gateway's
    event loop in s from its Server-Timing header)."""
    started = time.perf_counter()
    with urllib.request.urlopen(metrics_url, timeout=10) as reply:
        text = reply.read().decode()
        timing = reply.headers.get("Server-Timing", "")
    wall = time.perf_counter() - started
    render = re.search(r"render;dur=([0-9.]+)", timing)
    render_cpu = re.search(r"render_cpu;dur=([0-9.]+)", timing)
    if render_cpu:
        _RENDER_CPU_S.append(float(render_cpu.group(1)) / 1e3)
    requests = sum(float(m.group(1)) for m in re.finditer(
        r'^bessgw_transport_requests_total\{transport="modbus"[^}]*\} (\S+)$', text, re.MULTILINE))
    return requests, wall, float(render.group(1)) / 1e3 if render else math.nan


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayRun:
    """One gateway process over its own 200 simulated units, observability on (scraped every
    ``scrape_interval_s``) or off (None); measured over a window the caller opens and closes."""

    def __init__(self, ports: list[int], tmp: Path, scrape_interval_s: float | None) -> None:
        self.ports = ports
        self.scrape_interval_s = scrape_interval_s
        self.name = f"on_scrape_{scrape_interval_s:g}s" if scrape_interval_s is not None else "off"
        self.state = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=tmp))
        self.sink = SpanSink() if scrape_interval_s is not None else None
        tracing = (f"[tracing]\nenabled = true\nsample_ratio = 1.0\nendpoint = \"http://127.0.0.1:{self.sink.port}\"\n"
                   if self.sink is not None else "")
        units = "".join(f'[[units]]\nid = "u{i:03d}"\ndriver = "vendor_a"\n[units.modbus]\nhost = "127.0.0.1"\n'
                        f"port = {port}\nunit_id = 1\n\n" for i, port in enumerate(ports))
        config = self.state / "gateway.toml"
        http_port = _free_port()
        config.write_text(GATEWAY_CONFIG.format(state=self.state, http_port=http_port, poll_s=1.0 / POLL_RATE_HZ,
                                                tracing=tracing, units=units))
        self.metrics_url = f"http://127.0.0.1:{http_port}/metrics"
        self.log_path = self.state / "gateway.log"
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "bessgw.cli", "run", "--config", str(config)],
                                            stdout=log, stderr=subprocess.STDOUT, env=env)
        self.commands = self.scrapes = 0
        self.scrape_walls: list[float] = []
        self.scrape_renders: list[float] = []

    def wait_good(self, timeout_s: float = 90.0) -> None:
        """Every unit Good before anything is measured."""
        admin, deadline = socket_path(self.state), time.monotonic() + timeout_s
        while True:
            try:
                units_now = request(admin, {"cmd": "status"})["units"]
                if sum(u["quality"] == "good" for u in units_now) == len(self.ports):
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"units not all Good within {timeout_s:g} s: see {self.log_path}")
            time.sleep(0.5)

    def begin(self) -> None:
        self.requests0, self.cpu0, self.wall0 = (_scrape(self.metrics_url)[0], process_cpu_s(self.process.pid),
                                                 time.monotonic())
        self.next_command = self.wall0
        self.next_scrape = self.wall0 + (self.scrape_interval_s or 0.0) / 2  # apart from the edge scrapes

    def tick(self, now: float) -> float:
        """Send what is due (a setpoint a second, a scrape when on); returns when the next thing is due."""
        if now >= self.next_command:  # alternate between two targets: every command moves all 200 units
            p_kw = 1000.0 if self.commands % 2 else 2000.0
            reply = request(socket_path(self.state), {"cmd": "setpoint", "p_kw": p_kw,
                                                      "command_id": f"bench-{self.name}-{self.commands}"})
            assert reply.get("ok"), reply
            self.commands += 1
            self.next_command += COMMAND_INTERVAL_S
        if self.scrape_interval_s is not None and now >= self.next_scrape:
            _requests, wall, render = _scrape(self.metrics_url)
            self.scrape_walls.append(wall)
            self.scrape_renders.append(render)
            self.scrapes += 1
            self.next_scrape += self.scrape_interval_s
        return min(self.next_command, self.next_scrape if self.scrape_interval_s is not None else math.inf)

    def end(self) -> dict:
        cpu, wall = process_cpu_s(self.process.pid) - self.cpu0, time.monotonic() - self.wall0
        polls = _scrape(self.metrics_url)[0] - self.requests0
        result = {"name": self.name, "cpu_cores": round(cpu / wall, 3), "requests_per_s": round(polls / wall, 1),
                  "cpu_us_per_poll": round(cpu / max(polls, 1) * 1e6, 1), "commands": self.commands,
                  "scrapes": self.scrapes, "scrape_wall_s": self.scrape_walls, "scrape_render_s": self.scrape_renders}
        if self.sink is not None:
            result.update(otlp_exports=self.sink.requests, otlp_bytes=self.sink.bytes)
        print(f"  observability {self.name:16s}: {result['requests_per_s']:7.1f} requests/s, CPU"
              f" {result['cpu_cores'] * 100:.1f} % of a core, {result['cpu_us_per_poll']:.0f} µs/poll,"
              f" {self.commands} commands, {self.scrapes} scrapes"
              + (f", {self.sink.requests} OTLP exports ({self.sink.bytes} bytes)" if self.sink is not None else ""),
              flush=True)
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.sink is not None:
            self.sink.close()


def measure_together(runs: list[GatewayRun]) -> list[dict]:
    """Start, wait for, and measure ``runs`` over one and the same window: whatever else loads the machine
    meanwhile loads them alike, so their ratio is far steadier than that of windows one after another."""
    try:
        for run in runs:
            run.wait_good()
        time.sleep(WARMUP_S)
        for run in runs:
            run.begin()
        end_at = time.monotonic() + MEASURE_S
        while (now := time.monotonic()) < end_at:
            due = min(run.tick(now) for run in runs)
            time.sleep(max(0.0, min(due, end_at) - time.monotonic()))
        return [run.end() for run in runs]
    finally:
        for run in runs:
            run.stop()


def _spread(ratios: list[float]) -> dict:
    """Median of the pairwise on/off ratios as an overhead in %, with the min/max and the IQR."""
    ordered = sorted(ratios)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) >= 2 else [ordered[0]] * 3
    return {"median_pct": round((statistics.median(ordered) - 1) * 100, 1),
            "min_pct": round((ordered[0] - 1) * 100, 1), "max_pct": round((ordered[-1] - 1) * 100, 1),
            "iqr_pct": [round((quartiles[0] - 1) * 100, 1), round((quartiles[2] - 1) * 100, 1)],
            "pairs_pct": [round((r - 1) * 100, 1) for r in ratios]}


def _percentiles_ms(values: list[float]) -> dict:
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return {}
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1e3, 2),
            "p99_ms": round(values[max(0, math.ceil(0.99 * len(values)) - 1)] * 1e3, 2),
            "max_ms": round(values[-1] * 1e3, 2)}


def poll_bench(pairs: int, stress: bool) -> dict:
    """``pairs`` windows, each with an off and an on gateway running side by side (each over its own simulated
    units; which one starts first alternates); the overhead is the median of the pairwise ratios on/off, with
    the spread of those ratios."""
    modes: list[float | None] = [None, SCRAPE_INTERVAL_S] + ([STRESS_SCRAPE_INTERVAL_S] if stress else [])
    simulators = [start_simulator(POLL_UNITS) for _ in modes]
    runs: dict[str, list[dict]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bessgw-bench-obs-") as tmp:
            for pair in range(pairs):
                order = list(range(len(modes))) if pair % 2 == 0 else list(range(len(modes)))[::-1]
                window = [GatewayRun(simulators[i][1], Path(tmp), modes[i]) for i in order]
                for result in measure_together(window):
                    runs.setdefault(result.pop("name"), []).append(result)
    finally:
        for child, _ports in simulators:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    off = [r["cpu_us_per_poll"] for r in runs["off"]]
    overheads = {}
    for interval in modes[1:]:
        name = f"on_scrape_{interval:g}s"
        ratios = [on["cpu_us_per_poll"] / base for on, base in zip(runs[name], off, strict=True)]
        overheads[name] = _spread(ratios)
        o = overheads[name]
        print(f"  overhead of tracing + a scrape every {interval:g} s, per poll: median {o['median_pct']:+.1f} %"
              f" of {len(ratios)} pairs (min {o['min_pct']:+.1f} %, max {o['max_pct']:+.1f} %, IQR"
              f" {o['iqr_pct'][0]:+.1f}..{o['iqr_pct'][1]:+.1f} %; goal <= 5 %)")
    walls = [w for name, rs in runs.items() if name != "off" for r in rs for w in r.pop("scrape_wall_s")]
    renders = [w for name, rs in runs.items() if name != "off" for r in rs for w in r.pop("scrape_render_s")]
    for r in runs["off"]:
        r.pop("scrape_wall_s"), r.pop("scrape_render_s")
    live = {"client_wall": _percentiles_ms(walls), "render_on_loop": _percentiles_ms(renders),
            "render_cpu_edge_scrapes_included": _percentiles_ms(_RENDER_CPU_S)}
    if walls:
        render = live["render_on_loop"]  # empty from a gateway without the Server-Timing header
        print(f"  live gateway scrapes: render on its event loop p50 {render.get('p50_ms', 'n/a')} ms /"
              f" p99 {render.get('p99_ms', 'n/a')} ms; wall seen by the client p50"
              f" {live['client_wall']['p50_ms']} ms / p99 {live['client_wall']['p99_ms']} ms"
              f" (n = {len(walls)}; the wall includes waiting for the loop and the transfer); render thread CPU"
              f" of every scrape p50 {live['render_cpu_edge_scrapes_included'].get('p50_ms', 'n/a')} ms / max"
              f" {live['render_cpu_edge_scrapes_included'].get('max_ms', 'n/a')} ms")
    default = overheads[f"on_scrape_{SCRAPE_INTERVAL_S:g}s"]["median_pct"]
    return {"units": POLL_UNITS, "rate_hz": POLL_RATE_HZ, "measure_s": MEASURE_S, "pairs": pairs,
            "cpu_us_per_poll": {name: [r["cpu_us_per_poll"] for r in rs] for name, rs in runs.items()},
            "overhead": overheads, "live_scrape": live, "runs": runs,
            "goal_met": default <= 5.0, "loadavg": round(os.getloadavg()[0], 2)}


def main() -> None:
    result = {"bench": "observability", "scrape": scrape_bench()}
    if "--scrape-only" not in sys.argv:
        pairs = int(sys.argv[sys.argv.index("--pairs") + 1]) if "--pairs" in sys.argv else PAIRS
        result["poll"] = poll_bench(pairs, "--stress" in sys.argv)
    print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    main()
