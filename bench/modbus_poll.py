"""Benchmark: polling simulated vendor_a containers at 10 Hz, the gateway vs a bare pymodbus loop.

For 50 and 200 containers, the vendor_a simulator runs in a child process (one pymodbus server per
container on 127.0.0.1). In this process, two pollers take turns against the same servers:

* **gateway** — exactly what the daemon runs: ``ModbusTransport`` + the vendor_a driver + one core
  ``UnitSupervisor`` per unit (poll at 10 Hz, heartbeat at 1 Hz, quality, negotiation);
* **bare** — one ``AsyncModbusTcpClient`` per container reading the same telemetry registers at the same
  rate, nothing else (the floor any Python gateway built on pymodbus pays).

Reported per poller: achieved poll rate, cycle latency p50/p99 (start of a poll's read to its decoded
result), CPU seconds of this process (``time.process_time``) and CPU per poll; then the ratio gateway /
bare CPU per poll. The gateway is measured twice: as is, and after ``gc.freeze()`` (start-up objects
exempted from full collections, whose ~100 ms pauses otherwise show in p99). Targets: 200 containers at
10 Hz on one core (rate >= 98 % of nominal, CPU < 1 core), p99 < 50 ms, ratio <= 1.5 (judged on the
gateway as is). The last line printed is one JSON object with every figure.

Run: ``.venv/bin/python bench/modbus_poll.py`` (no arguments, about 2 minutes).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import time
from typing import Any

SIZES = (50, 200)
RATE_HZ = 10.0
WARMUP_S = 3.0
MEASURE_S = 10.0
FIRMWARE = "v2"

_CHILD = r"""
import asyncio, gc, json, sys
from bessgw.plugin.manager import build_plugin_manager
from bessgw_vendor_a.simulator import VendorASimulator

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
    latencies: list[float] = []
    polls = errors = 0
    measuring = False
    running = True

    async def poll(client: AsyncModbusTcpClient, offset: float) -> None:
        nonlocal polls, errors
        loop = asyncio.get_running_loop()
        interval = 1.0 / RATE_HZ
        next_at = loop.time() + offset
        # stopped by a flag, not by cancellation: pymodbus' wait_for can swallow a cancellation (3.11)
        while running:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            t0 = time.perf_counter()
            response = await client.read_holding_registers(start, count=count, device_id=1)
            if response.isError():
                errors += 1
            if measuring:
                latencies.append(time.perf_counter() - t0)
                polls += 1
            next_at += interval
            now = loop.time()
            if next_at < now:
                next_at = now + interval - ((now - next_at) % interval)

    tasks = [asyncio.create_task(poll(c, i / len(clients) / RATE_HZ)) for i, c in enumerate(clients)]
    await asyncio.sleep(WARMUP_S)
    measuring = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(MEASURE_S)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    measuring = running = False
    await stop(tasks)
    for client in clients:
        client.close()
    return summarise("bare", len(ports), polls, cpu, wall, latencies, errors)


# --------------------------------------------------------------------------------------- gateway


async def gateway(ports: list[int], freeze_gc: bool = False) -> dict[str, Any]:
    import structlog

    from bessgw.config import parse_config, unit_options
    from bessgw.model import Quality, SiteLimits
    from bessgw.plugin import DriverContext
    from bessgw.plugin.manager import build_plugin_manager
    from bessgw.southbound.modbus.transport import ModbusTransport
    from bessgw.unit.supervisor import UnitSupervisor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up
    log = structlog.get_logger()
    registry = build_plugin_manager().collect()
    config = parse_config({
        "gateway": {"id": "bench"},
        "defaults": {"poll_interval_s": 1.0 / RATE_HZ, "heartbeat_interval_s": 1.0},
        "units": [{"id": f"u{i}", "driver": "vendor_a", "modbus": {"port": p}} for i, p in enumerate(ports)],
    })
    spec = registry.drivers["vendor_a"]
    transport = ModbusTransport(config, log)
    latencies: list[float] = []
    measuring = False
    supervisors = []
    for unit in config.units:
        driver = spec.factory(DriverContext(unit_id=unit.id, link=transport.link_for(unit),
                                            options=unit_options(unit, spec.unit_options), log=log))
        read = driver.read

        async def timed_read(read=read):  # the cycle: request, answer, decode into Telemetry
            t0 = time.perf_counter()
            telemetry = await read()
            if measuring:
                latencies.append(time.perf_counter() - t0)
            return telemetry

        driver.read = timed_read  # type: ignore[method-assign]
        supervisors.append(UnitSupervisor(unit.id, driver, spec, config.unit_timing(unit), SiteLimits(),
                                          dict(registry.chemistries), log=log))

    async def staggered(supervisor: UnitSupervisor, delay: float) -> None:
        await asyncio.sleep(delay)  # stagger first polls, as the daemon does
        await supervisor.run()

    tasks = [asyncio.create_task(staggered(s, i / len(supervisors) / RATE_HZ))
             for i, s in enumerate(supervisors)]
    await asyncio.sleep(WARMUP_S)
    if freeze_gc:  # what a daemon can do once started: exempt start-up objects from full collections
        gc.freeze()
    measuring = True
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
    for task in tasks:
        task.cancel()
    await stop(tasks)
    await transport.close()
    if freeze_gc:
        gc.unfreeze()
    result = summarise("gateway+gc.freeze" if freeze_gc else "gateway", len(ports), polls, cpu, wall,
                       latencies, errors)
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
            runs = []
            for poller, kwargs in ((bare, {}), (gateway, {}), (gateway, {"freeze_gc": True})):
                sim_cpu0, wall0 = process_cpu_s(child.pid), time.perf_counter()
                result = asyncio.run(poller(ports, **kwargs))
                result["sim_cpu_cores"] = round((process_cpu_s(child.pid) - sim_cpu0)
                                                / (time.perf_counter() - wall0), 3)
                runs.append(result)
            bare_figures, gateway_figures, frozen_figures = runs
        finally:
            if child.stdin is not None:
                child.stdin.close()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        ratio = gateway_figures["cpu_us_per_poll"] / max(bare_figures["cpu_us_per_poll"], 1e-9)
        gateway_figures["cpu_ratio_vs_bare"] = round(ratio, 2)
        meets = (gateway_figures["poll_rate_hz"] >= 0.98 * count * RATE_HZ
                 and gateway_figures["cpu_cores"] < 1.0
                 and gateway_figures["latency_p99_ms"] < 50.0 and ratio <= 1.5)
        print(f"  ratio gateway/bare CPU per poll: {ratio:.2f} (target <= 1.5); "
              f"targets {'met' if meets else 'MISSED'}")
        frozen_figures["cpu_ratio_vs_bare"] = round(
            frozen_figures["cpu_us_per_poll"] / max(bare_figures["cpu_us_per_poll"], 1e-9), 2)
        figures[f"units_{count}"] = {"gateway": gateway_figures, "gateway_gc_frozen": frozen_figures,
                                     "bare": bare_figures, "ratio": round(ratio, 2), "targets_met": meets}
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)
    print(f"  load average (1 min) {figures['loadavg_start']} at start, {figures['loadavg_end']} at end "
          f"(the simulator's own CPU is in sim_cpu_cores; other load on the machine skews latency)")
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
