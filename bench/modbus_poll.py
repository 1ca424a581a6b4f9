"""Benchmark: polling simulated vendor_a containers at 10 Hz, the gateway vs bare pymodbus and raw asyncio.

For 50, 200 and 500 containers, the vendor_a simulator runs in a child process (one pymodbus server per
container on 127.0.0.1). In this process, pollers take turns against the same servers:

* **gateway** — exactly what the daemon runs: ``ModbusTransport`` + the vendor_a driver + one core
  ``UnitSupervisor`` per unit (poll at 10 Hz, heartbeat at 1 Hz, quality, negotiation);
* **gateway_opcua** (200 units) — the same with the northbound ``OpcUaServer`` on and publishing every
  unit, wired as the daemon wires it (a ``UnitDirectory`` of the supervisors; no client connected);
* **bare** — one ``AsyncModbusTcpClient`` per container reading the same telemetry registers at the same
  rate, nothing else (what any Python gateway built on the pymodbus async client pays);
* **transport_only** — the gateway's ``ModbusTransport`` alone (the driver's ``read_blocks`` per container
  at the same rate; no supervisor, no decoding): the part of the gateway that replaced the pymodbus client;
* **raw_asyncio** — one bare asyncio ``Protocol`` per container writing the same request and unpacking
  the answer, no timeouts, no checks: the floor of Python + asyncio + the loopback on this machine;
* **bare_lockstep** (50 and 200 units) — pymodbus' sync client, every container read in turn each 100 ms
  from one thread (no event loop);
* **gateway_one_hung** (200 units) — the gateway while container 0 answers only after 5 s: the bulkhead,
  reported as the gaps between consecutive polls of the 199 others (nominal 100 ms).

Reported per poller: achieved poll rate, cycle latency p50/p99 (start of a poll's read to its decoded
result), CPU seconds of this process (``time.process_time``) and CPU per poll; then the ratios of the
gateway's CPU per poll to bare (the target) and to raw asyncio, all from the same run. The gateway is
measured twice: as is, and after ``gc.freeze()`` (start-up objects exempted from full collections, whose
~100 ms pauses otherwise show in p99). Targets: 50 and 200 containers at 10 Hz (rate >= 98 % of nominal,
CPU < 1 core), p99 < 50 ms, ratio <= 1.5 (judged on the gateway as is); 500 containers hold >= 98 % of
5,000 polls/s on less than one core; 200 containers with OPC UA on in <= 0.25 of a core. The simulator
shares the machine's cores (its CPU is in ``sim_cpu_cores``): on a loaded 2-core machine the rates at 500
units say as much about the simulator as about the gateway. The last line printed is one JSON object
with every figure.

Run: ``.venv/bin/python bench/modbus_poll.py`` (no arguments, about 5 minutes).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

SIZES = (50, 200, 500)
LOCKSTEP_MAX_UNITS = 200  # beyond, one thread cannot do a sync round trip per container in 100 ms
OPCUA_SIZE = 200
RATE_HZ = 10.0
WARMUP_S = 3.0
MEASURE_S = 10.0
FIRMWARE = "v2"

_CHILD = r"""
import asyncio, gc, json, logging, sys
from bessgw.plugin.manager import build_plugin_manager
from bessgw_vendor_a.simulator import VendorASimulator

# the hung unit's dropped connections make pymodbus's server log its last frames in hex: expected here
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

async def main(count):
    chemistry = build_plugin_manager().collect().chemistries["lfp"]
    async with VendorASimulator(chemistry, count=count, port=0, firmware=sys.argv[2], watchdog_s=3600) as sim:
        gc.freeze()  # the device side: keep its GC pauses out of both pollers' latencies
        print(json.dumps(sim.ports), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it

asyncio.run(main(int(sys.argv[1])))
"""


def start_simulator(count: int) -> tuple[subprocess.Popen[str], list[int]]:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(count), FIRMWARE], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    line = child.stdout.readline()
    if not line:
        child.kill()
        raise RuntimeError("simulator child did not start")
    return child, json.loads(line)


def process_cpu_s(pid: int) -> float:
    """CPU seconds of another process (Linux /proc; NaN elsewhere) — the simulator's load."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summarise(name: str, count: int, polls: int, cpu_s: float, wall_s: float, latencies: list[float],
              errors: int) -> dict[str, Any]:
    rate = polls / wall_s
    out = {
        "poll_rate_hz": round(rate, 1),
        "nominal_rate_hz": count * RATE_HZ,
        "latency_p50_ms": round(percentile(latencies, 50) * 1e3, 2),
        "latency_p99_ms": round(percentile(latencies, 99) * 1e3, 2),
        "cpu_s": round(cpu_s, 3),
        "cpu_cores": round(cpu_s / wall_s, 3),
        "cpu_us_per_poll": round(cpu_s / max(polls, 1) * 1e6, 1),
        "errors": errors,
    }
    print(f"  {name:17s} {count:4d} units: {rate:7.1f} polls/s (nominal {count * RATE_HZ:.0f}), "
          f"latency p50 {out['latency_p50_ms']:.2f} ms p99 {out['latency_p99_ms']:.2f} ms, "
          f"CPU {out['cpu_cores'] * 100:.1f} % of a core, {out['cpu_us_per_poll']:.0f} µs/poll, errors {errors}")
    return out


async def stop(tasks: list[asyncio.Task[None]]) -> None:
    """Wait (bounded) for ``tasks`` to end; cancel what is left; complain about what ignores that."""
    _done, pending = await asyncio.wait(tasks, timeout=3.0)
    for task in pending:
        task.cancel()
    if pending:
        _done, stuck = await asyncio.wait(pending, timeout=3.0)
        if stuck:
            print(f"  WARNING: {len(stuck)} tasks ignored cancellation", file=sys.stderr)


@dataclasses.dataclass
class PacedRun:
    """What :func:`run_paced` measured over its window (latencies of the requests inside it)."""

    polls: int
    errors: int
    cpu_s: float
    wall_s: float
    latencies: list[float]


async def run_paced(requests: Sequence[Callable[[], Awaitable[bool]]], warmup_s: float = WARMUP_S,
                    measure_s: float = MEASURE_S) -> PacedRun:
    """One poller per request callable at ``RATE_HZ``, their starts spread over one period; measured after
    ``warmup_s`` for ``measure_s`` (CPU of this process). A request returns False for an error (it catches
    whatever it counts as one itself). Pollers stop on a flag, not by cancellation: pymodbus' ``wait_for`` can
    swallow a cancellation (3.11). A poll that falls behind skips the missed periods rather than bursting."""
    loop = asyncio.get_running_loop()
    interval = 1.0 / RATE_HZ
    run = PacedRun(0, 0, 0.0, 0.0, [])
    measuring = False
    running = True

    async def poll(request: Callable[[], Awaitable[bool]], offset: float) -> None:
        next_at = loop.time() + offset
        while running:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            t0 = time.perf_counter()
            if not await request():
                run.errors += 1
            if measuring:
                run.latencies.append(time.perf_counter() - t0)
                run.polls += 1
            next_at += interval
            now = loop.time()
            if next_at < now:
                next_at = now + interval - ((now - next_at) % interval)

    tasks = [asyncio.create_task(poll(r, i / len(requests) / RATE_HZ)) for i, r in enumerate(requests)]
    await asyncio.sleep(warmup_s)
    measuring = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(measure_s)
    run.cpu_s, run.wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    measuring = running = False
    await stop(tasks)
    return run


# ------------------------------------------------------------------------------------------ bare


async def bare(ports: list[int]) -> dict[str, Any]:
    from bessgw_vendor_a.registermap import load_map
    from pymodbus.client import AsyncModbusTcpClient

    spans = load_map(FIRMWARE).spans()
    start = min(s.address for s in spans)
    count = max(s.end for s in spans) - start
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=1.0, retries=0, reconnect_delay=0)
               for p in ports]
    for client in clients:
        assert await client.connect()

    def request(client: AsyncModbusTcpClient) -> Callable[[], Awaitable[bool]]:
        async def read() -> bool:
            return not (await client.read_holding_registers(start, count=count, device_id=1)).isError()
        return read

    run = await run_paced([request(client) for client in clients])
    for client in clients:
        client.close()
    return summarise("bare", len(ports), run.polls, run.cpu_s, run.wall_s, run.latencies, run.errors)



# -------------------------------------------------------------------------------- transport only


async def transport_only(ports: list[int]) -> dict[str, Any]:
    """The gateway's Modbus transport alone (``ModbusTransport`` links, ``read_blocks`` of the driver's
    spans), polled like bare: what the hot path replaced, without supervisor and driver."""
    import structlog
    from bessgw_vendor_a.registermap import load_map

    from bessgw.config import parse_config
    from bessgw.southbound.modbus.transport import ModbusTransport

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    spans = load_map(FIRMWARE).spans()
    config = parse_config({"gateway": {"id": "bench"}, "units": [
        {"id": f"u{i}", "driver": "vendor_a", "modbus": {"port": p}} for i, p in enumerate(ports)]})
    transport = ModbusTransport(config, structlog.get_logger())
    links = [transport.link_for(unit) for unit in config.units]

    def request(link: Any) -> Callable[[], Awaitable[bool]]:
        async def read() -> bool:
            try:
                await link.read_blocks(spans)
            except Exception:  # a device error: counted, as bare counts error responses
                return False
            return True
        return read

    run = await run_paced([request(link) for link in links])
    await transport.close()
    return summarise("transport only", len(ports), run.polls, run.cpu_s, run.wall_s, run.latencies, run.errors)


# ----------------------------------------------------------------------------------- raw asyncio


async def raw_asyncio(ports: list[int]) -> dict[str, Any]:
    """The floor: a request written, the answer unpacked; no timeouts, transaction checks or decoding."""
    import struct

    from bessgw_vendor_a.registermap import load_map

    spans = load_map(FIRMWARE).spans()
    start = min(s.address for s in spans)
    count = max(s.end for s in spans) - start
    request_bytes = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, start, count)
    registers = struct.Struct(f">{count}H")
    loop = asyncio.get_running_loop()

    class Raw(asyncio.Protocol):
        waiter: asyncio.Future[bytes] | None = None

        def data_received(self, data: bytes) -> None:  # the simulator answers each request in one write
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(data)

    connections = [await loop.create_connection(Raw, "127.0.0.1", p) for p in ports]

    def request(transport: asyncio.Transport, protocol: Raw) -> Callable[[], Awaitable[bool]]:
        async def read() -> bool:
            protocol.waiter = loop.create_future()
            transport.write(request_bytes)
            data = await protocol.waiter
            if len(data) != 9 + 2 * count:
                return False
            registers.unpack_from(data, 9)
            return True
        return read

    run = await run_paced([request(t, p) for t, p in connections])  # type: ignore[arg-type]
    for transport, _protocol in connections:
        transport.close()
    return summarise("raw asyncio", len(ports), run.polls, run.cpu_s, run.wall_s, run.latencies, run.errors)


# -------------------------------------------------------------------------------- bare lockstep


def bare_lockstep(ports: list[int]) -> dict[str, Any]:
    """pymodbus' sync client, one thread, every container read in turn once per 100 ms."""
    from bessgw_vendor_a.registermap import load_map
    from pymodbus.client import ModbusTcpClient

    spans = load_map(FIRMWARE).spans()
    start = min(s.address for s in spans)
    count = max(s.end for s in spans) - start
    clients = [ModbusTcpClient("127.0.0.1", port=p, timeout=1.0, retries=0) for p in ports]
    for client in clients:
        assert client.connect()
    latencies: list[float] = []
    polls = errors = 0
    interval = 1.0 / RATE_HZ
    begin = time.perf_counter()
    measure_from, measure_to = begin + WARMUP_S, begin + WARMUP_S + MEASURE_S
    cpu0 = wall0 = 0.0
    next_at = begin
    measuring = False
    while True:
        now = time.perf_counter()
        if not measuring and now >= measure_from:
            measuring = True
            cpu0, wall0 = time.process_time(), now
        if now >= measure_to:
            break
        for client in clients:
            t0 = time.perf_counter()
            if client.read_holding_registers(start, count=count, device_id=1).isError():
                errors += 1
            if measuring:
                latencies.append(time.perf_counter() - t0)
                polls += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.perf_counter()))  # the poll period itself
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    for client in clients:
        client.close()
    return summarise("bare lockstep", len(ports), polls, cpu, wall, latencies, errors)


# --------------------------------------------------------------------------------------- gateway


async def gateway(ports: list[int], freeze_gc: bool = False, opcua: bool = False,
                  hang_first: bool = False) -> dict[str, Any]:
    """The daemon's poll path; ``hang_first``: container 0 answers after 5 s from the measured window on
    (the bulkhead: how much the others' poll cycles stretch meanwhile)."""
    import tempfile
    from pathlib import Path

    import structlog

    from bessgw.config import parse_config, unit_options
    from bessgw.model import Quality, SiteLimits
    from bessgw.plugin import DriverContext
    from bessgw.plugin.manager import build_plugin_manager
    from bessgw.southbound.modbus.transport import ModbusTransport
    from bessgw.unit.directory import UnitDirectory
    from bessgw.unit.supervisor import UnitSupervisor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    log = structlog.get_logger()
    registry = build_plugin_manager().collect()
    state = tempfile.TemporaryDirectory(prefix="bench-modbus-")
    config = parse_config({
        "gateway": {"id": "bench", "state_dir": state.name},
        "defaults": {"poll_interval_s": 1.0 / RATE_HZ, "heartbeat_interval_s": 1.0},
        "units": [{"id": f"u{i}", "driver": "vendor_a", "modbus": {"port": p}} for i, p in enumerate(ports)],
        "northbound": {"opcua": {"enabled": opcua, "endpoint": "opc.tcp://127.0.0.1:0/bessgw",
                                 "anonymous": "read"}},
    })
    directory = UnitDirectory()
    spec = registry.drivers["vendor_a"]
    transport = ModbusTransport(config, log)
    latencies: list[float] = []
    finished: dict[str, list[float]] = {unit.id: [] for unit in config.units}  # when each poll ended
    measuring = False
    supervisors = []
    for unit in config.units:
        driver = spec.factory(DriverContext(unit_id=unit.id, link=transport.link_for(unit),
                                            options=unit_options(unit, spec.unit_options), log=log))
        read = driver.read

        async def timed_read(read=read, ends=finished[unit.id]):  # the cycle: request, answer, Telemetry
            t0 = time.perf_counter()
            telemetry = await read()
            if measuring:
                t1 = time.perf_counter()
                latencies.append(t1 - t0)
                ends.append(t1)
            return telemetry

        driver.read = timed_read  # type: ignore[method-assign]
        supervisors.append(UnitSupervisor(unit.id, driver, spec, config.unit_timing(unit), SiteLimits(),
                                          dict(registry.chemistries), log=log))
        directory.add(supervisors[-1])
    server = server_task = None
    if opcua:  # as the daemon builds it (bessgw.daemon.services): the server publishes the directory
        from bessgw.northbound.server import OpcUaServer

        server = OpcUaServer(config.northbound.opcua, config.gateway.id, directory, Path(state.name), log)
        server_task = asyncio.create_task(server.run())
        started = asyncio.create_task(server.started.wait())
        await asyncio.wait({started, server_task}, timeout=60.0, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            raise RuntimeError(f"OPC UA server did not start: {server_task}")

    async def staggered(supervisor: UnitSupervisor, delay: float) -> None:
        await asyncio.sleep(delay)  # stagger first polls, as the daemon does
        await supervisor.run()

    tasks = [asyncio.create_task(staggered(s, i / len(supervisors) / RATE_HZ))
             for i, s in enumerate(supervisors)]
    await asyncio.sleep(WARMUP_S)
    if freeze_gc:  # what a daemon can do once started: exempt start-up objects from full collections
        gc.freeze()
    if hang_first:  # the simulator's fault block (answered at once itself): every later answer 5 s late
        from bessgw_vendor_a.container import FAULT_DELAY_MS

        await transport.link_for(config.units[0]).write_registers(FAULT_DELAY_MS, [5000], verify=False)
    measuring = True
    published0 = server.publisher.values_written if server is not None and server.publisher is not None else 0
    polls0 = sum(s.polls for s in supervisors)
    errors0 = sum(s.poll_errors for s in supervisors)
    requests0 = sum(e.stats.requests for e in transport.endpoints.values())
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(MEASURE_S)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    measuring = False
    requests = sum(e.stats.requests for e in transport.endpoints.values()) - requests0
    polls = sum(s.polls for s in supervisors) - polls0
    errors = sum(s.poll_errors for s in supervisors) - errors0
    good = sum(s.telemetry.quality is Quality.GOOD for s in supervisors)
    published = (server.publisher.values_written - published0
                 if server is not None and server.publisher is not None else None)
    for task in tasks:
        task.cancel()
    await stop(tasks)
    if server_task is not None:
        server_task.cancel()
        await stop([server_task])
    await transport.close()
    state.cleanup()
    if freeze_gc:
        gc.unfreeze()
    if hang_first:
        from bessgw_vendor_a.container import FAULT_DELAY_MS
        from pymodbus.client import ModbusTcpClient

        reset = ModbusTcpClient("127.0.0.1", port=ports[0], timeout=2.0, retries=0)
        assert reset.connect() and not reset.write_registers(FAULT_DELAY_MS, [0], device_id=1).isError()
        reset.close()
    name = ("gateway+opcua" if opcua else "gateway+gc.freeze" if freeze_gc
            else "gateway, 1 hung" if hang_first else "gateway")
    result = summarise(name, len(ports), polls, cpu, wall, latencies, errors)
    if published is not None:
        result["opcua_values_written"] = published
        result["opcua_values_per_s"] = round(published / wall)
    if hang_first:  # the bulkhead: gaps between consecutive polls of every other unit
        gaps = [b - a for uid, ends in finished.items() if uid != config.units[0].id
                for a, b in itertools.pairwise(ends)]
        hung = finished[config.units[0].id]
        result["others_poll_gap_ms_p50"] = round(percentile(gaps, 50) * 1e3, 1)
        result["others_poll_gap_ms_p99"] = round(percentile(gaps, 99) * 1e3, 1)
        result["others_poll_gap_ms_max"] = round(max(gaps, default=float("nan")) * 1e3, 1)
        result["hung_unit_polls_completed"] = len(hung)
        print(f"  {'':17s} bulkhead: the other {len(ports) - 1} units' poll gaps p50 "
              f"{result['others_poll_gap_ms_p50']} ms, p99 {result['others_poll_gap_ms_p99']} ms, "
              f"max {result['others_poll_gap_ms_max']} ms (nominal {1e3 / RATE_HZ:.0f} ms)")
    result["units_good_at_end"] = good
    # polls plus heartbeat writes (and any setpoint read-backs): what the bare loop does not send
    result["requests_per_s"] = round(requests / wall, 1)
    result["cpu_us_per_request"] = round(cpu / max(requests, 1) * 1e6, 1)
    return result


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    print(f"modbus_poll: vendor_a {FIRMWARE} containers at {RATE_HZ:g} Hz, {MEASURE_S:g} s measured after "
          f"{WARMUP_S:g} s warm-up; python {platform.python_version()}, {os.cpu_count()} CPUs")
    figures: dict[str, Any] = {"bench": "modbus_poll", "rate_hz": RATE_HZ, "measure_s": MEASURE_S,
                               "cpus": os.cpu_count(), "loadavg_start": round(os.getloadavg()[0], 2)}
    for count in SIZES:
        child, ports = start_simulator(count)
        try:
            plan: list[tuple[str, Any, dict[str, Any]]] = [
                ("bare", bare, {}), ("gateway", gateway, {}), ("gateway_gc_frozen", gateway, {"freeze_gc": True}),
                ("transport_only", transport_only, {}), ("raw_asyncio", raw_asyncio, {})]
            if count == OPCUA_SIZE:
                plan.append(("gateway_opcua", gateway, {"opcua": True}))
            if count <= LOCKSTEP_MAX_UNITS:
                plan.append(("bare_lockstep", bare_lockstep, {}))
            if count == OPCUA_SIZE:  # last: it disturbs container 0 (reset afterwards)
                plan.append(("gateway_one_hung", gateway, {"hang_first": True}))
            runs: dict[str, dict[str, Any]] = {}
            for key, poller, kwargs in plan:
                sim_cpu0, wall0 = process_cpu_s(child.pid), time.perf_counter()
                result = poller(ports, **kwargs)
                if asyncio.iscoroutine(result):
                    result = asyncio.run(result)
                result["sim_cpu_cores"] = round((process_cpu_s(child.pid) - sim_cpu0)
                                                / (time.perf_counter() - wall0), 3)
                runs[key] = result
        finally:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        bare_us = max(runs["bare"]["cpu_us_per_poll"], 1e-9)
        raw_us = max(runs["raw_asyncio"]["cpu_us_per_poll"], 1e-9)
        for key, result in runs.items():
            if key.startswith("gateway") and key != "gateway_one_hung":
                result["cpu_ratio_vs_bare"] = round(result["cpu_us_per_poll"] / bare_us, 2)
                result["cpu_ratio_vs_raw_asyncio"] = round(result["cpu_us_per_poll"] / raw_us, 2)
        transport_us = runs["transport_only"]["cpu_us_per_poll"]
        runs["transport_only"]["cpu_ratio_vs_bare"] = round(transport_us / bare_us, 2)
        runs["transport_only"]["cpu_ratio_vs_raw_asyncio"] = round(transport_us / raw_us, 2)
        gateway_figures = runs["gateway"]
        ratio = gateway_figures["cpu_us_per_poll"] / bare_us
        rate_ok = gateway_figures["poll_rate_hz"] >= 0.98 * count * RATE_HZ and gateway_figures["cpu_cores"] < 1.0
        meets = rate_ok if count > OPCUA_SIZE else (rate_ok and gateway_figures["latency_p99_ms"] < 50.0
                                                      and ratio <= 1.5)
        print(f"  same-run CPU per poll: gateway {gateway_figures['cpu_us_per_poll']:.0f} µs = {ratio:.2f}x bare "
              f"pymodbus async ({runs['bare']['cpu_us_per_poll']:.0f} µs), "
              f"{gateway_figures['cpu_ratio_vs_raw_asyncio']:.2f}x raw asyncio ({raw_us:.0f} µs)"
              + f"; transport alone {transport_us:.0f} µs = {transport_us / bare_us:.2f}x bare"
              + (f", bare lockstep {runs['bare_lockstep']['cpu_us_per_poll']:.0f} µs" if "bare_lockstep" in runs
                 else ""))
        row: dict[str, Any] = {**runs, "ratio": round(ratio, 2), "targets_met": meets}
        if "gateway_opcua" in runs:
            opcua = runs["gateway_opcua"]
            row["opcua_quarter_core_met"] = opcua["cpu_cores"] <= 0.25
            print(f"  OPC UA on: {opcua['cpu_cores'] * 100:.1f} % of a core, {opcua['cpu_us_per_poll']:.0f} µs/poll "
                  f"(goal <= 25 %: {'met' if row['opcua_quarter_core_met'] else 'MISSED'})")
        print(f"  targets {'met' if meets else 'MISSED'}")
        figures[f"units_{count}"] = row
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(f"  load average (1 min) {figures['loadavg_start']} at start, {figures['loadavg_end']} at end "
          f"(the simulator's own CPU is in sim_cpu_cores; other load on the machine skews latency)")
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
