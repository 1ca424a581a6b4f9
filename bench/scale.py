"""Scale benchmark: one real gateway process at 10 .. 1,000 vendor_a units, and its campus view of 100 peers.

For each size N (``--sizes``, default 10, 50, 200, 500, 1000):

* the vendor_a simulator runs N containers (real pymodbus servers on 127.0.0.1) in a **child process**,
  which also counts the read requests it serves and notes when each container's P-setpoint register is
  written;
* **bare**: this process polls the same containers with one ``AsyncModbusTcpClient`` each, reading the
  same registers at 10 Hz (polls spread over the period), nothing else: the floor a Python gateway built
  on pymodbus pays. CPU is this process's own;
* **gateway**: a real ``bessgw run`` process (the daemon's wiring: Modbus transport, one unit supervisor
  per unit polling at 10 Hz with a 1 Hz heartbeat, the control service at 10 Hz with its journal, the
  admin socket, the HTTP listener for ``/metrics``; with ``--opcua`` also the OPC UA server and its
  publisher) started once all containers listen. After it has connected every unit and a warm-up,
  measured over ``--measure-s``: CPU of the gateway process (``/proc/PID/stat``), RSS (``VmRSS``), polls
  served by the simulator (reads of the telemetry block), and from ``/metrics`` the control steps and the
  control step duration (histogram; the p99 is interpolated inside its bucket as Prometheus'
  ``histogram_quantile`` does);
* **SetPower**: ``--changes`` setpoints alternating between 20 % and 30 % of the fleet's discharge
  capability, each submitted through the admin socket's ``setpoint`` command (what ``bessgw setpoint``
  sends: validated, journaled with fsync, arbitrated, allocated, written by the control loop), timed
  from just before the request to the last container's P register holding its new value (wall clock
  of both processes). The OPC UA ``SetPower`` method enters the same command path; it is not used here
  (unless ``--opcua-subscriber``, below) so that the same path can be timed at every size (the OPC UA
  server at 1,000 units is its own cost, measured by ``bench/opcua_north.py``). Its same-run floor
  (``bare_writes``, unless ``--no-bare``): the bench writes the registers itself, as described below.

``--opcua-subscriber`` measures the setting of issue 16's goal 3 instead of the admin socket: the OPC UA
server on (Basic256Sha256 SignAndEncrypt, an ``operator`` login; the bench's client certificate is
trusted before the gateway starts), and in a thread of this process an asyncua client (the subscriber of
``bench/opcua_north.py``) subscribed to every variable of every unit (23 x N monitored items). The fleet
holds a setpoint through the measured window, so SOC, current, voltage and temperatures change at every
poll and the client receives them; then SetPower is the gateway's OPC UA ``SetPower`` method (one call,
shared over all its units), one every ``--setpower-interval-s`` (0.5 s), timed from just before the call
to the last P register written, with per command: the call's acknowledgement, the collector pauses of the
gateway inside it (the gateway runs under a small wrapper that times every collection into a file; the
daemon is unchanged), and between commands a plain OPC UA Read's round trip. Over the SetPower phase:
polls served (telemetry-block reads only, not a write's read-back) against the nominal rate, the
gateway's and the simulator's CPU, the control step p99, the journal commit p50 / p99, and the control
write timeouts (``bessgw_control_write_timeouts_total``). The same-run floor, **bare writes**: the bench
writes every container's P and Q registers itself (one request each, all at once), timed the same way,
while the gateway polls and publishes. ``--sim-processes 2`` splits the simulator over two processes;
``--profile PATH`` records py-spy's collapsed stacks of the gateway during the SetPower phase:

    .venv/bin/python bench/scale.py --sizes 200 --campus-peers 0 --opcua-subscriber --changes 60

Campus (``--campus-peers``, default 100 x ``--campus-units`` 20; ``--campus-peers 0`` skips it): the
same gateway with ``[federation]`` and 20 units of its own, joined by 100 real federation nodes
(``FederationService``, the daemon's gossip service, over the real authenticated UDP wire) running in
child processes, each publishing 20 unit summaries refreshed every second. Reported: time from the
peers' start until the gateway's campus view (asked over the admin socket) holds 99 % and all of the
100 x 20 peer units (``--campus-timeout-s`` bounds the wait; the figures are measured anyway and say
what had arrived), then the same figures as a size row, measured with the view, the RSS the view costs
over the same gateway alone, and the peers' membership states as the gateway sees them at the end (100
peers share a few processes here: on a loaded machine a starved peer misses probes and is suspected).
With ``--opcua`` (or ``--opcua-subscriber``) the campus gateway serves OPC UA too, so the view mirrored
into ``Objects/Campus`` (a node tree per peer gateway and unit) is part of what the row measures.

Prints the growth curve as a table (with the same-run ratio gateway / bare CPU per poll at each size) and
ends with one JSON line. On a 2-core machine: about 40 s for each size up to 200, 1-3 minutes for 500 and
1,000, 1-2.5 minutes for the campus row, so everything takes 6-10 minutes; pick what you need:

    .venv/bin/python bench/scale.py                       # everything
    .venv/bin/python bench/scale.py --sizes 10,200 --campus-peers 0      # about 2 minutes
    .venv/bin/python bench/scale.py --sizes 200 --opcua --campus-peers 0

A size whose gateway exits (for instance because its OPC UA server did not start within the daemon's
start-up bound) is reported with the tail of the gateway's log instead of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from modbus_poll import FIRMWARE, RATE_HZ, run_paced  # this directory: the poll bench's paced pollers

TICK_S = os.sysconf("SC_CLK_TCK")

_SIM_CHILD = r"""
import asyncio, gc, json, sys, time
import numpy as np
from bessgw.plugin.manager import build_plugin_manager
from bessgw_vendor_a.container import ContainerServer
from bessgw_vendor_a.registermap import load_map
from bessgw_vendor_a.simulator import VendorASimulator

POLL_START = min(span.address for span in load_map(sys.argv[2]).spans())
polls = [0]  # telemetry polls served (reads at the telemetry block; not a write's read-back)
_action = ContainerServer._action

async def counted(self, function_code, start_address, address, count, registers, set_values):
    if set_values is None and address == POLL_START:
        polls[0] += 1
    return await _action(self, function_code, start_address, address, count, registers, set_values)

ContainerServer._action = counted

async def main(count):
    chemistry = build_plugin_manager().collect().chemistries["lfp"]
    async with VendorASimulator(chemistry, count=count, port=0, firmware=sys.argv[2], watchdog_s=3600) as sim:
        fleet = sim.fleet
        address = fleet.map["p_setpoint_kw"].address
        written_at = np.full(count, -np.inf)
        raw = [None] * count
        original = fleet.apply_write

        def apply_write(index, first, values, now_s):
            original(index, first, values, now_s)
            if first <= address < first + len(values):
                written_at[index] = time.time()
                raw[index] = tuple(values[address - first: address - first + 2])

        fleet.apply_write = apply_write
        gc.freeze()  # the device side: keep its GC pauses out of the pollers' figures
        print(json.dumps({"ports": sim.ports}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        marked = list(raw)
        while line := await reader.readline():
            request = json.loads(line)
            if request["cmd"] == "reads":
                reply = {"reads": sum(c.counts.reads for c in sim.containers), "polls": polls[0]}
            elif request["cmd"] == "mark":  # the register values before a command
                marked = list(raw)
                reply = {"ok": True}
            else:  # "wait": every P register written after `since` with a value other than the marked one
                since, deadline = request["since"], loop.time() + request["timeout_s"]
                def done():
                    return all(w > since and r != m for w, r, m in zip(written_at, raw, marked))
                while not done() and loop.time() < deadline:
                    await asyncio.sleep(0.002)
                reply = {"latency_s": float(written_at.max() - since) if done() else None,
                         "first_s": float(written_at.min() - since) if done() else None}
            print(json.dumps(reply), flush=True)

asyncio.run(main(int(sys.argv[1])))
"""

#: ``bessgw run`` with every garbage-collector pause timed into a file (argv[1]): the bench's view of what
#: stops the gateway's event loop; the daemon itself is unchanged
_GC_TIMED_GATEWAY = r"""
import gc, sys, time
from bessgw.cli import main

log = open(sys.argv[1].split("@")[0], "a", buffering=1)
started = [0.0]

def timed(phase, info):
    if phase == "start":
        started[0] = time.perf_counter()
    else:
        log.write(f"{time.time():.6f} {info['generation']} {(time.perf_counter() - started[0]) * 1e3:.3f}\n")

gc.callbacks.append(timed)
if len(sys.argv[1].split("@")) == 2:  # log@thresholds: the daemon's collector thresholds replaced (A/B runs)
    import bessgw.daemon.heap as heap
    heap.GC_THRESHOLDS = tuple(int(n) for n in sys.argv[1].split("@")[1].split(","))
sys.exit(main(sys.argv[2:]))
"""

_PEERS_CHILD = r"""
import asyncio, json, sys, time
import structlog
from bessgw.config import FederationSection
from bessgw.federation.service import FederationService
from bessgw.federation.view import UnitSummary
from bessgw.model import Quality, UnitState

structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

async def main(spec):
    services = []
    for gateway_id, port in zip(spec["ids"], spec["ports"]):
        settings = FederationSection(bind_host="127.0.0.1", bind_port=port, keys=[spec["key"]],
                                     seeds=spec["seeds"])
        services.append(FederationService(settings, gateway_id, log=structlog.get_logger("peer")))
    for service in services:
        await service.start()
    tasks = [asyncio.create_task(service.run()) for service in services]

    async def publish():
        while True:  # every peer's units, fresh each second, as a gateway's supervisors would report them
            now = time.time()
            for n, service in enumerate(services):
                service.update_local_units([
                    UnitSummary(f"{service.node.id}-u{i}", UnitState.RUNNING, Quality.GOOD, 40.0 + (i + n) % 20,
                                0.0, 500.0, 500.0, 1000.0, now)
                    for i in range(spec["units"])])
            await asyncio.sleep(1.0)

    tasks.append(asyncio.create_task(publish()))
    print(json.dumps({"ready": len(services)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes it
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

asyncio.run(main(json.loads(sys.argv[1])))
"""


# --------------------------------------------------------------------------------------- helpers


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def stop_child(child: subprocess.Popen[str]) -> None:
    if child.stdin is not None and not child.stdin.closed:
        child.stdin.close()
    try:
        child.wait(10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


class SimChild:
    """One vendor_a simulator child process: its ports, and its answers to the requests of ``_SIM_CHILD``."""

    def __init__(self, count: int) -> None:
        self.child = subprocess.Popen([sys.executable, "-c", _SIM_CHILD, str(count), FIRMWARE],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.line(60.0 + count * 0.05)
        self.ports: list[int] = json.loads(line)["ports"]

    def line(self, timeout_s: float) -> str:
        assert self.child.stdout is not None
        deadline = time.monotonic() + timeout_s
        import select

        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.child.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                line = self.child.stdout.readline()
                if not line:
                    raise RuntimeError("simulator child ended")
                return line
        raise RuntimeError("simulator child did not answer in time")

    def send(self, request: dict[str, Any]) -> None:
        assert self.child.stdin is not None
        self.child.stdin.write(json.dumps(request) + "\n")
        self.child.stdin.flush()


class Simulator:
    """The vendor_a simulator, in one or more child processes: ports, served reads, P-register write
    latencies. Several processes keep the device side from setting the pace at large sizes (one Python
    process serves about a core's worth of Modbus requests)."""

    def __init__(self, count: int, processes: int = 1) -> None:
        processes = max(1, min(processes, count))
        shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        self.children: list[SimChild] = []
        try:
            for share in shares:
                self.children.append(SimChild(share))
        except BaseException:
            self.close()
            raise
        self.ports: list[int] = [port for child in self.children for port in child.ports]

    def ask(self, request: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        """Ask every child at once, and merge: reads summed, latency the largest (None if any missed)."""
        for child in self.children:
            child.send(request)
        replies = [json.loads(child.line(timeout_s)) for child in self.children]
        if request["cmd"] == "reads":
            return {key: sum(reply[key] for reply in replies) for key in ("reads", "polls")}
        if request["cmd"] == "wait":
            latencies = [reply["latency_s"] for reply in replies]
            firsts = [reply["first_s"] for reply in replies]
            return {"latency_s": None if None in latencies else max(latencies),
                    "first_s": None if None in firsts else min(firsts)}
        return replies[0]

    def reads(self) -> int:
        """Read requests served (polls, a write's read-back, identification reads)."""
        return int(self.ask({"cmd": "reads"})["reads"])

    def polls(self) -> int:
        """Telemetry polls served: reads of the telemetry block only."""
        return int(self.ask({"cmd": "reads"})["polls"])

    def cpu_s(self) -> float:
        return sum(cpu_s(child.child.pid) for child in self.children)

    def close(self) -> None:
        for child in self.children:
            stop_child(child.child)


# ------------------------------------------------------------------------------------------ bare


async def bare(ports: list[int], warmup_s: float, measure_s: float) -> dict[str, Any]:
    import logging

    from bessgw_vendor_a.registermap import load_map
    from pymodbus.client import AsyncModbusTcpClient

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    spans = load_map(FIRMWARE).spans()
    start = min(s.address for s in spans)
    count = max(s.end for s in spans) - start
    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=1.0, retries=0, reconnect_delay=0) for p in ports]
    for client in clients:
        assert await client.connect()

    def request(client: AsyncModbusTcpClient) -> Callable[[], Awaitable[bool]]:
        async def read() -> bool:
            try:
                return not (await client.read_holding_registers(start, count=count, device_id=1)).isError()
            except Exception:  # a timeout under overload is a figure, not a crash
                return False
        return read

    run = await run_paced([request(client) for client in clients], warmup_s, measure_s)
    for client in clients:
        client.close()
    return {"poll_rate_hz": round(run.polls / run.wall_s, 1), "cpu_cores": round(run.cpu_s / run.wall_s, 3),
            "cpu_us_per_poll": round(run.cpu_s / max(run.polls, 1) * 1e6, 1), "errors": run.errors}


async def bare_writes(sim: Simulator, changes: int) -> dict[str, Any]:
    """The floor of a command: the bench writes every container's P and Q registers itself (one
    ``write_registers`` per container, all at once, one ``AsyncModbusTcpClient`` each, as the driver's
    write does minus its read-back), timed like SetPower: from before the writes to the last P register
    written, seen by the simulator. Runs while the gateway polls (and publishes): the same device load."""
    import logging

    from bessgw_vendor_a.registermap import load_map
    from pymodbus.client import AsyncModbusTcpClient

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    regmap = load_map(FIRMWARE)
    p_reg = regmap["p_setpoint_kw"]
    if p_reg.width != 2 or regmap["q_setpoint_kvar"].address != p_reg.address + 2:
        raise RuntimeError(f"firmware {FIRMWARE}: the bare writes expect adjacent 32-bit P and Q registers")

    def words(p_kw: float) -> list[int]:  # i32, low word first, as the v2 map says; Q = 0
        raw = round(p_kw / p_reg.scale) & 0xFFFFFFFF
        return [raw & 0xFFFF, raw >> 16, 0, 0]

    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=2.0, retries=0, reconnect_delay=0)
               for p in sim.ports]
    for client in clients:
        assert await client.connect()

    async def write(client: AsyncModbusTcpClient, values: list[int]) -> bool:
        try:
            return not (await client.write_registers(p_reg.address, values, device_id=1)).isError()
        except Exception:  # a timeout under overload is a figure, not a crash
            return False

    latencies: list[float] = []
    spreads: list[float] = []  # first register written -> last
    missed = errors = 0
    try:
        for change in range(changes):
            values = words(111.1 + 11.1 * (change % 2))  # never a value the gateway writes
            sim.ask({"cmd": "mark"})
            since = time.time()
            errors += sum(not ok for ok in await asyncio.gather(*(write(c, values) for c in clients)))
            answer = sim.ask({"cmd": "wait", "since": since, "timeout_s": 10.0}, timeout_s=20.0)
            if answer["latency_s"] is None:
                missed += 1
            else:
                latencies.append(answer["latency_s"])
                spreads.append(answer["latency_s"] - answer["first_s"])
    finally:
        for client in clients:
            client.close()
    return {"p50_ms": round(percentile(latencies, 50) * 1e3, 1), "p99_ms": round(percentile(latencies, 99) * 1e3, 1),
            "max_ms": round(max(latencies, default=float("nan")) * 1e3, 1), "changes": changes, "missed": missed,
            "errors": errors, "spread_p50_ms": round(percentile(spreads, 50) * 1e3, 1),
            "spread_p99_ms": round(percentile(spreads, 99) * 1e3, 1)}


# --------------------------------------------------------------------------------------- gateway


def gateway_config(state_dir: Path, ports: list[int], http_port: int, *, opcua_port: int | None = None,
                   federation: dict[str, Any] | None = None, operator_hash: str | None = None) -> str:
    lines = [
        "[gateway]", f'id = "{(federation or {}).get("id", "scale")}"', f'state_dir = "{state_dir}"',
        'log_format = "json"', 'log_level = "warning"', "telemetry_log_interval_s = 0", "",
        "[defaults]", f"poll_interval_s = {1.0 / RATE_HZ}", "heartbeat_interval_s = 1.0", "",
        "[control]", "period_s = 0.1", "",
        "[[control.sources]]", 'name = "local"', "priority = 300", "heartbeat_timeout_s = 3600.0", "",
        # the source of OPC UA SetPower calls (docs/opcua.md)
        "[[control.sources]]", 'name = "scada"', "priority = 200", "heartbeat_timeout_s = 3600.0", "",
        "[http]", f'listen = "127.0.0.1:{http_port}"', "",
    ]
    if opcua_port is not None and operator_hash is not None:  # a SCADA client: encrypted, logged in as operator
        lines += ["[northbound.opcua]", "enabled = true", f'endpoint = "opc.tcp://127.0.0.1:{opcua_port}/bessgw"',
                  'security_policies = ["Basic256Sha256_SignAndEncrypt"]', 'anonymous = "off"', "",
                  "[[northbound.opcua.users]]", 'name = "operator"', f'password_hash = "{operator_hash}"',
                  'role = "operator"', ""]
    elif opcua_port is not None:
        lines += ["[northbound.opcua]", "enabled = true", f'endpoint = "opc.tcp://127.0.0.1:{opcua_port}/bessgw"',
                  'security_policies = ["None"]', 'anonymous = "read"', ""]
    if federation is not None:
        seeds = ", ".join(f'"{s}"' for s in federation["seeds"])
        lines += ["[federation]", 'bind_host = "127.0.0.1"', f"bind_port = {federation['port']}",
                  f"seeds = [{seeds}]", f'keys = ["{federation["key"]}"]', ""]
    for i, port in enumerate(ports):
        lines += ["[[units]]", f'id = "u{i}"', 'driver = "vendor_a"', "[units.modbus]", 'host = "127.0.0.1"',
                  f"port = {port}", ""]
    return "\n".join(lines)


class Gateway:
    """A real ``bessgw run`` process."""

    def __init__(self, workdir: Path, config_text: str, gc_thresholds: str = "") -> None:
        self.state_dir = workdir / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "bessgw.toml"
        self.config.write_text(config_text)
        self.log = (workdir / "gateway.log").open("w")
        self.started = time.perf_counter()
        #: the gateway's garbage-collector pauses, one ``wall_time generation ms`` line each (bench only)
        self.gc_log = workdir / "gc-pauses.txt"
        wrapper_arg = f"{self.gc_log}@{gc_thresholds}" if gc_thresholds else str(self.gc_log)
        self.proc = subprocess.Popen([sys.executable, "-c", _GC_TIMED_GATEWAY, wrapper_arg, "run", "--config",
                                      str(self.config)], stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def gc_log_entries(self) -> list[tuple[float, int, float]]:
        """(wall time the pause ended, generation, ms) of every collector pause so far."""
        if not self.gc_log.exists():
            return []
        return [(float(at), int(generation), float(ms))
                for at, generation, ms in (line.split() for line in self.gc_log.read_text().splitlines())]

    def gc_pauses(self, since: float, until: float) -> dict[str, Any]:
        """The gateway's collector pauses between two wall-clock times: count, total and longest, by generation."""
        pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        for at, generation, ms in self.gc_log_entries():
            if since <= at <= until:
                pauses[generation].append(ms)
        return {f"gen{g}": {"count": len(v), "total_ms": round(sum(v), 1), "max_ms": round(max(v, default=0.0), 1)}
                for g, v in pauses.items()}

    def admin(self, payload: dict[str, Any], timeout_s: float = 30.0) -> dict[str, Any]:
        from bessgw.daemon.admin import request, socket_path

        return request(socket_path(self.state_dir), payload, timeout_s)

    def wait(self, predicate: Any, timeout_s: float, what: str, step_s: float = 0.25) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited ({self.proc.returncode}) while waiting for {what}")
            try:
                last = predicate()
            except (OSError, ValueError, KeyError):
                last = None
            if last:
                return last
            time.sleep(step_s)  # polling a condition with a deadline
        raise RuntimeError(f"gateway: no {what} within {timeout_s:g} s (last: {str(last)[:200]})")

    def all_good(self, count: int) -> bool:
        units = self.admin({"cmd": "status"})["units"]
        return len(units) == count and all(u["connected"] and u["quality"] == "good" for u in units)

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def scrape(http_port: int) -> dict[str, Any]:
    """The control figures of ``/metrics``: steps, write timeouts and the step duration's cumulative buckets."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    steps = 0.0
    write_timeouts: float | None = None  # None: a gateway without the counter
    buckets: dict[float, float] = {}
    journal: dict[float, float] = {}  # the journal's commit (fsync) duration, cumulative buckets
    for line in text.splitlines():
        if line.startswith("bessgw_control_steps_total"):
            steps = float(line.rsplit(" ", 1)[1])
        elif line.startswith("bessgw_control_write_timeouts_total"):
            write_timeouts = float(line.rsplit(" ", 1)[1])
        elif line.startswith("bessgw_control_step_duration_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("bessgw_journal_commit_duration_seconds_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            journal[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return {"steps": steps, "buckets": buckets, "write_timeouts": write_timeouts, "journal": journal}


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """Prometheus-style quantile of the observations between two scrapes (linear inside the bucket)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, cumulative in zip(bounds, counts, strict=True):
        if cumulative >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(cumulative - below, 1e-12)
        lower, below = bound, cumulative
    return lower


class OpcUaClient:
    """A SCADA client of the gateway in a thread of this process: asyncua over Basic256Sha256
    SignAndEncrypt as ``operator``, optionally subscribed to every variable of every unit (the subscriber
    of ``bench/opcua_north.py``), calling the gateway's ``SetPower`` (one command for all its units).

    Its own event loop keeps serving the subscription while the main thread waits on the simulator."""

    PASSWORD = "bench-operator"

    def __init__(self, endpoint: str, pki_dir: Path, gateway_id: str, unit_ids: list[str], subscribe: bool) -> None:
        from opcua_north import Counter  # this directory: the northbound bench's subscription handler

        self.endpoint, self.pki_dir, self.gateway_id, self.unit_ids = endpoint, pki_dir, gateway_id, unit_ids
        self.counter = Counter()
        self.monitored_items = 0
        self.subscribe_s = float("nan")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="opcua-client", daemon=True)
        self.thread.start()
        self.client: Any = None
        self.run(self._connect(subscribe), 180.0)

    @staticmethod
    def trust(pki_dir: Path) -> tuple[Path, Path]:
        """Create the client's certificate in the gateway's trust list (before the gateway starts)."""
        from bessgw.northbound.certificates import CertificateFiles, ensure_certificate

        files = ensure_certificate(CertificateFiles(pki_dir / "trusted" / "scale-client.der",
                                                    pki_dir.parent / "scale-client.pem"),
                                   "urn:bessgw-bench:scale-client", "scale bench client", client=True,
                                   hostnames=("localhost",))
        return files.certificate, files.private_key

    def run(self, coroutine: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout_s)

    async def _connect(self, subscribe: bool) -> None:
        from asyncua import ua
        from opcua_north import NAMESPACE_URI, connect_operator, subscribe_everything

        cert, key = self.trust(self.pki_dir)
        self.client = await connect_operator(self.endpoint, cert, key, "urn:bessgw-bench:scale-client",
                                             self.PASSWORD)
        self.ns = await self.client.get_namespace_index(NAMESPACE_URI)
        self.gateway_node = self.client.get_node(ua.NodeId(f"Gateway/{self.gateway_id}", self.ns))
        self.unit_count = self.client.get_node(ua.NodeId(f"Gateway/{self.gateway_id}.UnitCount", self.ns))
        # the server adds the units' nodes as their supervisors report: wait until every unit has its nodes
        probes = [ua.NodeId(f"Unit/{self.gateway_id}/{unit}.SocPct", self.ns) for unit in self.unit_ids]
        deadline = time.monotonic() + 120.0
        while True:
            values = await self.client.uaclient.read_attributes(probes, ua.AttributeIds.BrowseName)
            missing = sum(not value.StatusCode.is_good() for value in values)
            if not missing:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{missing} of {len(probes)} units have no OPC UA nodes after 120 s")
            await asyncio.sleep(0.5)  # polling a condition with a deadline
        if subscribe:
            _subscription, self.monitored_items, self.subscribe_s = await subscribe_everything(
                self.client, self.ns, self.gateway_id, self.unit_ids, self.counter)

    def set_power(self, p_kw: float, command_id: str) -> tuple[float, float]:
        """Call the gateway's SetPower; returns the wall-clock time just before the call and the seconds
        until it returned (a refusal raises, with the status code in its message)."""
        from asyncua import ua

        async def call() -> tuple[float, float]:
            since = time.time()
            await self.gateway_node.call_method(ua.QualifiedName("SetPower", self.ns), p_kw, 0.0, command_id)
            return since, time.time() - since

        return self.run(call(), 30.0)

    def read_rtt(self) -> float:
        """Seconds for one Read of one value over the same session: the channel's own round trip (the
        client thread, the secure channel, the gateway's event loop), without the command path."""
        async def read() -> float:
            started = time.perf_counter()
            await self.unit_count.read_value()
            return time.perf_counter() - started

        return self.run(read(), 30.0)

    def close(self) -> None:
        try:
            if self.client is not None:
                self.run(self.client.disconnect(), 30.0)
        except Exception as err:  # the gateway may already be gone: the figures are taken
            print(f"  opcua client: disconnect failed: {type(err).__name__}: {err}", flush=True)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def start_profiler(pid: int, output: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the gateway (without pausing it) during the SetPower phase, collapsed stacks to
    ``output``; None when not asked for."""
    if output is None:
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--nonblocking", "--rate", "250", "--format",
                             "raw", "--output", str(output)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is None:
        return
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()


def measure_gateway(gateway: Gateway, sim: Simulator, count: int, http_port: int, warmup_s: float,
                    measure_s: float, changes: int, client: OpcUaClient | None = None,
                    bare_write_changes: int = 0, interval_s: float = 0.0,
                    profile_to: Path | None = None) -> dict[str, Any]:
    """The gateway's figures over ``measure_s``, then SetPower ``changes`` times (through ``client``'s
    OPC UA call if given, else the admin socket), each timed to the last P register written. With a
    client the fleet holds a setpoint through the window, so the values the client subscribes to change;
    ``bare_write_changes`` > 0 adds the bench's own register writes as the same-run baseline."""
    pid = gateway.proc.pid
    time.sleep(warmup_s)  # let start-up work (identify, negotiation, first allocations) settle
    units = gateway.admin({"cmd": "status"})["units"]
    capability = sum(u["max_discharge_kw"] or 0.0 for u in units)

    returned: list[float] = []  # seconds until the command was acknowledged (journaled), per command

    def submit(p_kw: float) -> float:
        """One SetPower; returns the wall-clock time just before it was sent."""
        command_id = f"scale-{uuid.uuid4()}"
        if client is not None:
            try:
                since, took_s = client.set_power(p_kw, command_id)
                returned.append(took_s)
                return since
            except Exception as err:  # asyncua's status-code error or a timeout: this size's figures end here
                raise RuntimeError(f"OPC UA SetPower({p_kw}) failed: {type(err).__name__}: {err}") from err
        since = time.time()
        reply = gateway.admin({"cmd": "setpoint", "p_kw": p_kw, "command_id": command_id})
        if not reply.get("ok", True) or "error" in reply:
            raise RuntimeError(f"setpoint refused: {reply}")
        returned.append(time.time() - since)
        return since

    held_p_kw = None
    if client is not None:  # power flows, so SOC, current, voltage and temperatures change every poll
        held_p_kw = round(capability * 0.2, 1)
        submit(held_p_kw)
        time.sleep(1.0)  # the ramp (a full unit's power per second) is done; the window sees a held setpoint
    notified0 = client.counter.notifications if client is not None else 0
    metrics0, served0 = scrape(http_port), sim.ask({"cmd": "reads"})
    cpu0, sim_cpu0, own_cpu0, wall0 = cpu_s(pid), sim.cpu_s(), time.process_time(), time.perf_counter()
    window_at = time.time()
    rss_peak = rss_mb(pid)
    deadline = wall0 + measure_s
    while time.perf_counter() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.perf_counter())))
        rss_peak = max(rss_peak, rss_mb(pid))
    cpu, wall = cpu_s(pid) - cpu0, time.perf_counter() - wall0
    window_gc = gateway.gc_pauses(window_at, window_at + wall)
    sim_cores = (sim.cpu_s() - sim_cpu0) / wall
    own_cores = (time.process_time() - own_cpu0) / wall
    metrics1, served1 = scrape(http_port), sim.ask({"cmd": "reads"})
    notified = (client.counter.notifications if client is not None else 0) - notified0
    polls = served1["polls"] - served0["polls"]  # a write's read-back is a read, not a poll
    status = gateway.admin({"cmd": "status"})
    good = sum(u["quality"] == "good" for u in status["units"])
    loadavg = os.getloadavg()[0]
    baseline = asyncio.run(bare_writes(sim, bare_write_changes)) if bare_write_changes > 0 else None

    latencies: list[float] = []
    windows: list[tuple[float, float]] = []  # each command's [sent, last register written], wall clock
    firsts: list[float] = []  # each command's sent -> first register written
    read_rtts: list[float] = []
    missed = 0
    metrics2, polls2, wall2 = scrape(http_port), sim.polls(), time.perf_counter()
    cpu2, sim_cpu2 = cpu_s(pid), sim.cpu_s()
    returned.clear()  # the held setpoint's is not one of the measured
    profiler = start_profiler(pid, profile_to)
    phase_at = time.time()
    for change in range(changes):  # 30 % first: a value the held 20 % (or the bare writes) did not leave
        p_kw = round(capability * (0.3 - 0.1 * (change % 2)), 1)
        sim.ask({"cmd": "mark"})
        since = submit(p_kw)
        answer = sim.ask({"cmd": "wait", "since": since, "timeout_s": 10.0}, timeout_s=20.0)
        if answer["latency_s"] is None:
            missed += 1
        else:
            latencies.append(answer["latency_s"])
            firsts.append(answer["first_s"])
            windows.append((since, since + answer["latency_s"]))
        if client is not None:  # between commands: the OPC UA channel's own round trip, for comparison
            read_rtts.append(client.read_rtt())
        time.sleep(max(0.0, since + interval_s - time.time()))  # the next command at the SCADA's cadence
    wall3 = time.perf_counter()
    stop_profiler(profiler)
    phase_gc = gateway.gc_pauses(phase_at, time.time())
    entries = gateway.gc_log_entries()
    # the collector's share of each command: pause time inside [sent, last register written]
    in_command = [sum(max(0.0, min(end, at) - max(start, at - ms / 1e3)) for at, _g, ms in entries)
                  for start, end in windows]
    phase_gc["in_command_ms_p50"] = round(percentile(in_command, 50) * 1e3, 1)
    phase_gc["in_command_ms_p99"] = round(percentile(in_command, 99) * 1e3, 1)
    phase_gc["in_command_ms_max"] = round(max(in_command, default=float("nan")) * 1e3, 1)
    phase_gc["share_of_latency_pct"] = round(100.0 * sum(in_command) / max(sum(latencies), 1e-9), 1)
    metrics3, polls3 = scrape(http_port), sim.polls()
    cpu3, sim_cpu3 = cpu_s(pid), sim.cpu_s()
    gateway.admin({"cmd": "release"})
    step_p99 = histogram_quantile(0.99, metrics0["buckets"], metrics1["buckets"])
    timeouts = (None if metrics3["write_timeouts"] is None or metrics0["write_timeouts"] is None
                else int(metrics3["write_timeouts"] - metrics0["write_timeouts"]))
    spreads = [last - first for last, first in zip(latencies, firsts, strict=True)]
    row = {
        "poll_rate_hz": round(polls / wall, 1),
        "nominal_rate_hz": count * RATE_HZ,
        "cpu_cores": round(cpu / wall, 3),
        "cpu_us_per_poll": round(cpu / max(polls, 1) * 1e6, 1),
        "rss_mb": round(rss_mb(pid), 1),
        "rss_peak_mb": round(rss_peak, 1),
        "control_steps_hz": round((metrics1["steps"] - metrics0["steps"]) / wall, 2),
        "control_step_p99_ms": round(step_p99 * 1e3, 2),
        "setpower_p50_ms": round(percentile(latencies, 50) * 1e3, 1),
        "setpower_p99_ms": round(percentile(latencies, 99) * 1e3, 1),
        "setpower_max_ms": round(max(latencies, default=float("nan")) * 1e3, 1),
        "setpower_changes": changes,
        "setpower_missed": missed,
        "units_good": good,
        "sim_cpu_cores": round(sim_cores, 3),  # near 1.0: the device side, not the gateway, sets the pace
        "loadavg": round(loadavg, 2),
        # added with the OPC UA subscriber mode (issue 16, goal 3)
        "poll_rate_pct": round(100.0 * polls / wall / (count * RATE_HZ), 2),
        "setpower_path": "opcua Gateway/SetPower" if client is not None else "admin socket setpoint",
        "setpower_window_s": round(wall3 - wall2, 1),
        "setpower_interval_s": interval_s,
        "setpower_poll_rate_pct": round(100.0 * (polls3 - polls2) / (wall3 - wall2) / (count * RATE_HZ), 2),
        "reads_hz": round((served1["reads"] - served0["reads"]) / wall, 1),  # polls + read-backs + others
        "setpower_cpu_cores": round((cpu3 - cpu2) / (wall3 - wall2), 3),
        "setpower_sim_cpu_cores": round((sim_cpu3 - sim_cpu2) / (wall3 - wall2), 3),
        "setpower_step_p99_ms": round(histogram_quantile(0.99, metrics2["buckets"], metrics3["buckets"]) * 1e3, 2),
        # where a command's time goes: acknowledged (OPC UA or admin round trip, journal fsync included) ...
        # ... the first register written (the command path before the fan-out), the fan-out itself ...
        "setpower_first_write_p50_ms": round(percentile(firsts, 50) * 1e3, 1),
        "setpower_first_write_p99_ms": round(percentile(firsts, 99) * 1e3, 1),
        "setpower_spread_p50_ms": round(percentile(spreads, 50) * 1e3, 1),
        "setpower_spread_p99_ms": round(percentile(spreads, 99) * 1e3, 1),
        "setpower_ack_p50_ms": round(percentile(returned, 50) * 1e3, 1),
        "setpower_ack_p99_ms": round(percentile(returned, 99) * 1e3, 1),
        "gc_window": window_gc,  # the gateway's collector pauses during the measured window ...
        "gc_setpower": phase_gc,  # ... and during the SetPower phase
        "opcua_read_rtt_p50_ms": round(percentile(read_rtts, 50) * 1e3, 1) if read_rtts else None,
        "opcua_read_rtt_p99_ms": round(percentile(read_rtts, 99) * 1e3, 1) if read_rtts else None,
        "journal_commit_p50_ms": round(histogram_quantile(0.5, metrics2["journal"], metrics3["journal"]) * 1e3, 2),
        "journal_commit_p99_ms": round(histogram_quantile(0.99, metrics2["journal"], metrics3["journal"]) * 1e3, 2),
        "control_write_timeouts": timeouts,  # over the window, the bare writes and the SetPower changes
        "bench_cpu_cores": round(own_cores, 3),  # this process: the OPC UA client's decoding, mostly
        "sim_processes": len(sim.children),
    }
    if client is not None:
        row.update({"held_p_kw": held_p_kw, "monitored_items": client.monitored_items,
                    "subscribe_s": round(client.subscribe_s, 1), "notifications_per_s": round(notified / wall),
                    "subscription_status_changes": list(client.counter.status_changes)})
    if baseline is not None:
        row["bare_writes"] = baseline
        row["setpower_p99_ratio_vs_bare_writes"] = round(
            row["setpower_p99_ms"] / max(baseline["p99_ms"], 1e-9), 2)
        row["setpower_p50_ratio_vs_bare_writes"] = round(
            row["setpower_p50_ms"] / max(baseline["p50_ms"], 1e-9), 2)
    if client is not None:  # issue 16, goal 3, as measured in this run
        row["goal3"] = {"setpower_p99_below_50_ms": row["setpower_p99_ms"] < 50.0,
                        "no_write_timeouts": timeouts == 0,
                        "poll_rate_at_least_99_5_pct": min(row["poll_rate_pct"], row["setpower_poll_rate_pct"]) >= 99.5}
    return row


def run_size(count: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sim = Simulator(count, args.sim_processes)
    try:
        row: dict[str, Any] = {"units": count}
        if not args.no_bare:
            sim_cpu0, wall0 = sim.cpu_s(), time.perf_counter()
            row["bare"] = asyncio.run(bare(sim.ports, args.warmup_s / 2, args.measure_s))
            row["bare"]["sim_cpu_cores"] = round((sim.cpu_s() - sim_cpu0) / (time.perf_counter() - wall0), 3)
        http_port = free_port()
        opcua_port = free_port() if args.opcua or args.opcua_subscriber else None
        operator_hash = None
        if args.opcua_subscriber:
            from bessgw.northbound.passwords import hash_password

            operator_hash = hash_password(OpcUaClient.PASSWORD)
            OpcUaClient.trust(workdir / f"gw{count}" / "state" / "pki")
        gateway = Gateway(workdir / f"gw{count}", gateway_config(workdir / f"gw{count}" / "state", sim.ports,
                                                                 http_port, opcua_port=opcua_port,
                                                                 operator_hash=operator_hash),
                          args.gateway_gc_thresholds)
        client: OpcUaClient | None = None
        try:
            try:
                gateway.wait(lambda: gateway.all_good(count), 60.0 + count * 0.06, "unit connected with good data")
                row["ready_s"] = round(time.perf_counter() - gateway.started, 1)
            except RuntimeError as err:  # an overloaded machine: measure what runs, and say so
                if gateway.proc.poll() is not None:
                    raise
                row["not_ready"] = str(err)
            if args.opcua_subscriber:
                assert opcua_port is not None
                gateway.wait(lambda: listening(opcua_port), 120.0, "OPC UA server listening")
                client = OpcUaClient(f"opc.tcp://127.0.0.1:{opcua_port}/bessgw", gateway.state_dir / "pki",
                                     "scale", [f"u{i}" for i in range(count)], subscribe=True)
            row["gateway"] = measure_gateway(gateway, sim, count, http_port, args.warmup_s, args.measure_s,
                                             args.changes, client,
                                             0 if args.no_bare else (args.bare_write_changes or args.changes),
                                             args.setpower_interval_s,
                                             args.profile and Path(args.profile).with_suffix(f".{count}.txt"))
        finally:
            if client is not None:
                client.close()
            gateway.close()
        if "bare" in row:
            row["ratio_cpu_per_poll_vs_bare"] = round(
                row["gateway"]["cpu_us_per_poll"] / max(row["bare"]["cpu_us_per_poll"], 1e-9), 2)
        return row
    finally:
        sim.close()


def run_campus(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    own, peers, per_peer = args.campus_own_units, args.campus_peers, args.campus_units
    key = base64.b64encode(os.urandom(32)).decode()
    gossip_port = free_port(socket.SOCK_DGRAM)
    peer_ports = [free_port(socket.SOCK_DGRAM) for _ in range(peers)]
    sim = Simulator(own)
    children: list[subprocess.Popen[str]] = []
    try:
        http_port = free_port()
        # with --opcua the campus view is mirrored into the address space too (Objects/Campus): its cost counts
        config = gateway_config(workdir / "campus" / "state", sim.ports, http_port,
                                opcua_port=free_port() if args.opcua or args.opcua_subscriber else None,
                                federation={"id": "scale-gw", "port": gossip_port, "seeds": [], "key": key})
        gateway = Gateway(workdir / "campus", config)
        try:
            gateway.wait(lambda: gateway.all_good(own), 60.0, "unit connected with good data")
            alone_rss = rss_mb(gateway.proc.pid)
            joined = time.perf_counter()
            per_child = (peers + args.campus_processes - 1) // args.campus_processes
            peer_log = (workdir / "peers.log").open("w")
            for first in range(0, peers, per_child):
                ids = [f"peer{i:03d}" for i in range(first, min(peers, first + per_child))]
                spec = {"ids": ids, "ports": peer_ports[first:first + len(ids)], "key": key, "units": per_peer,
                        "seeds": [f"127.0.0.1:{gossip_port}"]}
                children.append(subprocess.Popen([sys.executable, "-c", _PEERS_CHILD, json.dumps(spec)],
                                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=peer_log,
                                                 text=True))

            progress: dict[str, float | None] = {"at": 0.0, "t99": None}
            expected = own + peers * per_peer

            def full_view() -> bool:
                aggregate = gateway.admin({"cmd": "view"})["view"]["aggregate"]
                if progress["t99"] is None and aggregate["units_total"] - own >= 0.99 * peers * per_peer:
                    progress["t99"] = time.perf_counter() - joined
                if time.monotonic() - (progress["at"] or 0.0) > 10.0:
                    progress["at"] = time.monotonic()
                    print(f"  campus: view holds {aggregate['units_total']} units, {aggregate['gateways_alive']} "
                          f"gateways alive, {aggregate['gateways_suspect']} suspect", flush=True)
                return aggregate["units_total"] >= expected  # every peer unit has arrived

            view_s: float | None = None
            try:
                gateway.wait(full_view, args.campus_timeout_s, f"campus view of {peers} x {per_peer} peer units",
                             step_s=0.5)
                view_s = time.perf_counter() - joined
            except RuntimeError:  # measured anyway with what arrived; the row says how much that was
                if gateway.proc.poll() is not None:
                    raise
            row = measure_gateway(gateway, sim, own, http_port, args.warmup_s, args.measure_s, args.changes)
            row.update({"peers": peers, "units_per_peer": per_peer, "own_units": own,
                        "view_complete_s": None if view_s is None else round(view_s, 1),
                        "view_99pct_s": None if progress["t99"] is None else round(progress["t99"], 1),
                        "rss_alone_mb": round(alone_rss, 1),
                        "rss_view_cost_mb": round(row["rss_mb"] - alone_rss, 1)})
            view = gateway.admin({"cmd": "view"})["view"]["aggregate"]
            row["view_units_at_end"] = view["units_total"]
            # peers share a few processes of a loaded machine: a starved one may miss probes (suspect / dead)
            row["view_gateways_at_end"] = {state: view[f"gateways_{state}"] for state in ("alive", "suspect", "dead")}
            row["view_units_by_quality_at_end"] = dict(view["units_by_quality"])
            return row
        finally:
            gateway.close()
    finally:
        for child in children:
            stop_child(child)
        sim.close()
        log_path = workdir / "peers.log"
        if log_path.exists() and log_path.stat().st_size:
            print(f"  campus: the peer processes wrote {len(log_path.read_text().splitlines())} lines on stderr, "
                  f"first: {log_path.read_text().splitlines()[0][:160]}")


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10,50,200,500,1000", help="comma-separated unit counts")
    parser.add_argument("--warmup-s", type=float, default=4.0)
    parser.add_argument("--measure-s", type=float, default=8.0)
    parser.add_argument("--changes", type=int, default=20, help="SetPower changes per size")
    parser.add_argument("--opcua", action="store_true", help="run the gateway's OPC UA server too (no client)")
    parser.add_argument("--opcua-subscriber", action="store_true",
                        help="OPC UA on with a client (SignAndEncrypt, operator) subscribed to every unit variable; "
                             "SetPower through the gateway's OPC UA SetPower method")
    parser.add_argument("--setpower-interval-s", type=float, default=None,
                        help="pause between SetPower commands, as a SCADA's setpoint cadence (default: 0.5 with "
                             "--opcua-subscriber, else none)")
    parser.add_argument("--gateway-gc-thresholds", default="", metavar="G0,G1,G2",
                        help="replace the daemon's collector thresholds (e.g. 700,10,10, CPython's defaults) for A/B")
    parser.add_argument("--profile", metavar="PATH",
                        help="py-spy the gateway during the SetPower phase: collapsed stacks to PATH.<units>.txt")
    parser.add_argument("--no-bare", action="store_true", help="skip the bare pymodbus baselines (polls and writes)")
    parser.add_argument("--bare-write-changes", type=int, default=0,
                        help="bare register-write commands per size (default: as many as --changes)")
    parser.add_argument("--sim-processes", type=int, default=1, help="simulator child processes per size")
    parser.add_argument("--campus-peers", type=int, default=100, help="peer gateways (0: no campus row)")
    parser.add_argument("--campus-units", type=int, default=20, help="units per peer gateway")
    parser.add_argument("--campus-own-units", type=int, default=20, help="units of the measured gateway")
    parser.add_argument("--campus-processes", type=int, default=4, help="child processes for the peers")
    parser.add_argument("--campus-timeout-s", type=float, default=90.0, help="wait this long for the full view")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.setpower_interval_s is None:
        args.setpower_interval_s = 0.5 if args.opcua_subscriber else 0.0
    opcua = args.opcua or args.opcua_subscriber
    path = ("OPC UA Gateway/SetPower (SignAndEncrypt, operator), a client subscribed to every unit variable"
            if args.opcua_subscriber else "admin socket setpoint (command path)")
    print(f"scale: vendor_a {FIRMWARE} at {RATE_HZ:g} Hz, sizes {sizes}, {args.measure_s:g} s measured after "
          f"{args.warmup_s:g} s; OPC UA {'on' if opcua else 'off'}; SetPower via {path}; simulator in "
          f"{args.sim_processes} process(es); {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    figures: dict[str, Any] = {"bench": "scale", "rate_hz": RATE_HZ, "measure_s": args.measure_s,
                               "opcua": opcua, "setpower_path": path, "opcua_subscriber": args.opcua_subscriber,
                               "sim_processes": args.sim_processes,
                               "gateway_gc_thresholds": args.gateway_gc_thresholds or "daemon's",
                               "cpus": os.cpu_count(), "loadavg_start": round(os.getloadavg()[0], 2), "sizes": {}}
    workdir = Path(tempfile.mkdtemp(prefix="bessgw-scale-"))
    try:
        for count in sizes:
            try:
                row = run_size(count, args, workdir)
            except (RuntimeError, OSError) as err:  # one size failing must not lose the others' figures
                log_path = workdir / f"gw{count}" / "gateway.log"
                tail = log_path.read_text(errors="replace").splitlines()[-3:] if log_path.exists() else []
                print(f"  {count:5d} units: FAILED: {type(err).__name__}: {err}; gateway log ends: {tail}", flush=True)
                figures["sizes"][str(count)] = {"units": count, "error": f"{type(err).__name__}: {err}",
                                                "gateway_log_tail": tail}
                continue
            figures["sizes"][str(count)] = row
            g, b = row["gateway"], row.get("bare", {})
            nan = float("nan")
            print(f"  {count:5d} units: gateway {g['poll_rate_hz']:8.1f}/{g['nominal_rate_hz']:.0f} polls/s, "
                  f"{g['cpu_cores'] * 100:5.1f} % core, {g['cpu_us_per_poll']:6.1f} µs/poll, {g['rss_mb']:6.1f} MB, "
                  f"control {g['control_steps_hz']:.1f} Hz p99 {g['control_step_p99_ms']:.1f} ms, SetPower p99 "
                  f"{g['setpower_p99_ms']:.1f} ms (missed {g['setpower_missed']}); bare "
                  f"{b.get('poll_rate_hz', nan):.1f} polls/s {b.get('cpu_us_per_poll', nan):.1f} µs/poll",
                  flush=True)
            bw = g.get("bare_writes")
            print(f"         SetPower ({g['setpower_path']}) p50 {g['setpower_p50_ms']:.1f} ms p99 "
                  f"{g['setpower_p99_ms']:.1f} ms over {g['setpower_changes']}; bare register writes p50 "
                  f"{bw['p50_ms'] if bw else nan:.1f} ms p99 {bw['p99_ms'] if bw else nan:.1f} ms (ratio p99 "
                  f"{g.get('setpower_p99_ratio_vs_bare_writes', nan):.2f}); poll rate {g['poll_rate_pct']:.2f} % "
                  f"(window) {g['setpower_poll_rate_pct']:.2f} % (SetPower phase); control write timeouts "
                  f"{g['control_write_timeouts']}; gateway {g['setpower_cpu_cores'] * 100:.1f} % core and simulator "
                  f"{g['setpower_sim_cpu_cores'] * 100:.1f} % during SetPower"
                  + (f"; {g['monitored_items']} monitored items, {g['notifications_per_s']} notifications/s"
                     if "monitored_items" in g else ""), flush=True)
            if "goal3" in g:
                print(f"         goal 3 in this run (load {g['loadavg']}): "
                      + ", ".join(f"{name} {'yes' if met else 'NO'}" for name, met in g["goal3"].items()), flush=True)
        if args.campus_peers > 0:
            try:
                figures["campus"] = run_campus(args, workdir)
            except (RuntimeError, OSError) as err:
                figures["campus"] = {"error": str(err)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures["loadavg_end"] = round(os.getloadavg()[0], 2)

    print()
    header = (f"{'units':>6} {'polls/s':>9} {'nominal':>8} {'core':>6} {'µs/poll':>8} {'bare µs':>8} {'ratio':>6} "
              f"{'RSS MB':>7} {'ctl Hz':>7} {'ctl p99':>8} {'SetP p50':>9} {'SetP p99':>9} {'sim core':>8} {'load':>5}")
    print(header)
    for count, row in figures["sizes"].items():
        if "error" in row:
            print(f"{count:>6} failed: {row['error']}")
            continue
        g, b = row["gateway"], row.get("bare", {})
        print(f"{count:>6} {g['poll_rate_hz']:>9.1f} {g['nominal_rate_hz']:>8.0f} {g['cpu_cores']:>6.3f} "
              f"{g['cpu_us_per_poll']:>8.1f} {b.get('cpu_us_per_poll', float('nan')):>8.1f} "
              f"{row.get('ratio_cpu_per_poll_vs_bare', float('nan')):>6.2f} {g['rss_mb']:>7.1f} "
              f"{g['control_steps_hz']:>7.2f} {g['control_step_p99_ms']:>7.1f}ms {g['setpower_p50_ms']:>7.1f}ms "
              f"{g['setpower_p99_ms']:>7.1f}ms {g['sim_cpu_cores']:>8.2f} {g['loadavg']:>5.1f}")
    if "error" in figures.get("campus", {}):
        print(f"campus failed: {figures['campus']['error']}")
    elif "campus" in figures:
        c = figures["campus"]
        print(f"campus: {c['peers']} peers x {c['units_per_peer']} units + {c['own_units']} own: view complete "
              f"{c['view_complete_s']} s (99 %: {c['view_99pct_s']} s) after the peers started; with it: "
              f"{c['cpu_cores'] * 100:.1f} % core, "
              f"{c['cpu_us_per_poll']:.1f} µs/poll, RSS {c['rss_mb']:.1f} MB ({c['rss_view_cost_mb']:+.1f} MB for "
              f"the view), control p99 {c['control_step_p99_ms']:.1f} ms, SetPower p99 {c['setpower_p99_ms']:.1f} ms; "
              f"at the end {c['view_units_at_end']} units, peers {c['view_gateways_at_end']}")
    print("(CPU and RSS are the gateway process's; the simulator and the peers run in their own processes. "
          "Absolute figures move with the machine's load; the ratio is measured in the same run.)")
    print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
