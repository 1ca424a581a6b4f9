"""Soak: a real gateway process under steady load for a long time; does anything grow?

Why: a gateway runs for months. Leaks that a minute-long test never shows (a task per reconnect, an fd
per flap, an entry per command id, a buffer per notification) show as a slope over half an hour. This
bench runs the real thing and measures the slope (issue 12, "soak bench").

What runs (all on 127.0.0.1, free ports, in a temporary directory removed at the end):

* vendor_a simulators in their own processes (``bessgw sim vendor_a --port 0 --count K``, a few
  endpoints of up to ``--units-per-sim`` containers each): real pymodbus servers driven by the physics
  model. vendor_a rather than in-memory units, so that the transports, reconnects and register decoding
  are part of what is soaked; 200 units at the demo's poll interval (0.5 s) fit this 2-core machine.
* one more unit, the **flapper**, whose simulator is a process of its own, killed every
  ``--flap-period-s`` and restarted on the same port ``--flap-down-s`` later (reconnect, backoff,
  circuit breaker, quality turning Stale/Bad and Good again);
* the gateway: ``bessgw run`` with a generated config (every unit polled at ``--poll-interval-s``,
  OPC UA server on, control on);
* in this process: an asyncua client (None policy, operator login) subscribed to every variable of every
  unit, of the gateway node and of the campus node; and a command every second with a fresh id,
  alternating gateway-level (the admin socket's ``setpoint``, i.e. ``bessgw setpoint``, and the OPC UA
  gateway ``SetPower``) and unit-level (OPC UA ``SetPower`` on the next unit in turn); every tenth command
  repeats the previous one (same id and arguments) and must get the same answer back (idempotency).

Each ``--sample-s`` (60 s; shorter for runs under 6 minutes so that there are at least 6 samples) the
gateway process is sampled: RSS and threads (``/proc/PID/status``), open fds (``/proc/PID/fd``), CPU time
(``/proc/PID/stat``) and asyncio tasks (the admin ``status`` reply). After the warm-up (the first 20 % of
the run or 3 minutes, whichever is shorter) the RSS growth is a least-squares slope in % of the first
post-warm-up RSS per hour; fds, threads and tasks "grew" when the median of the last third of the
samples exceeds the largest value of the first third by more than max(2, 1 %). Goal: RSS < 1 %/h,
nothing else growing.

Run: ``.venv/bin/python bench/soak.py [--minutes 30] [--units 200]``. Prints a table row per sample and
ends with one JSON line of figures. Ctrl-C (or SIGTERM) stops it early without figures; every child
process is stopped either way (and gets SIGTERM from the kernel should this process die unexpectedly).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import itertools
import json
import logging
import math
import os
import random
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

GATEWAY_ID = "gw-soak"
PASSWORD = "soak-operator"
NAMESPACE_URI = "urn:bessgw:opcua"
START_TIMEOUT_S = 180.0  # bound on the gateway's start until every unit reports Good
STOP_TIMEOUT_S = 20.0  # bound on a child's orderly stop before it is killed
CALL_TIMEOUT_S = 10.0  # bound on one command or one admin request
SIM_READY_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Children get SIGTERM if this bench dies without cleaning up (even by SIGKILL)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# ------------------------------------------------------------------------------ child processes


class Children:
    """Every process this bench starts; :meth:`stop_all` ends them (TERM, then KILL after a bound)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], log: Path, *, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as stderr:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
                                    env=env, preexec_fn=_die_with_parent)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in list(self.procs):
            self.stop(proc)


def bessgw(*args: str) -> list[str]:
    return [sys.executable, "-m", "bessgw.cli", *args]


async def start_simulator(children: Children, tmp: Path, name: str, port: int, count: int,
                          env: dict[str, str]) -> tuple[subprocess.Popen[bytes], list[int]]:
    """``bessgw sim vendor_a`` in its own process; returns it and its containers' ports once it is ready.

    Started from the event loop's thread (the parent-death signal is tied to the starting thread), and
    waited for without blocking the loop (the subscriber and the commands go on meanwhile).
    """
    log = tmp / f"{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    proc = children.start(bessgw("sim", "vendor_a", "--port", str(port), "--count", str(count),
                                 "--watchdog-s", "5", "--soc-pct", "50"), log, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + SIM_READY_TIMEOUT_S
    line = b""
    while b"ready" not in line:
        if time.monotonic() > deadline or proc.poll() is not None:
            children.stop(proc)
            raise RuntimeError(f"simulator {name} did not start (see {log}): {log.read_text()[-2000:]}")
        readable, _, _ = select.select([proc.stdout], [], [], 0)
        if readable:
            line = proc.stdout.readline()
        else:
            await asyncio.sleep(0.05)
    with log.open("rb") as handle:
        handle.seek(offset)
        for raw in handle:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if entry.get("event") == "vendor_a_simulator_listening":
                return proc, list(entry["ports"])
    children.stop(proc)
    raise RuntimeError(f"simulator {name} did not log its ports (see {log})")


def gateway_config(tmp: Path, unit_ports: list[int], opcua_port: int, args: argparse.Namespace) -> str:
    """The generated gateway config: one vendor_a unit per simulated container, OPC UA and control on."""
    from bessgw.northbound.passwords import hash_password

    lines = [
        "[gateway]", f'id = "{GATEWAY_ID}"', f'state_dir = "{tmp / "state"}"', 'log_level = "info"',
        'log_format = "json"', "telemetry_log_interval_s = 0", "shutdown_grace_s = 10.0", "",
        "[defaults]", f"poll_interval_s = {args.poll_interval_s}", "stale_after_s = 2.0", "bad_after_s = 6.0",
        "heartbeat_interval_s = 1.0", "",
        "[control]", f"period_s = {args.control_period_s}", "",
        "[northbound.opcua]", "enabled = true", f'endpoint = "opc.tcp://127.0.0.1:{opcua_port}/bessgw"',
        'security_policies = ["None"]', f"sampling_interval_s = {args.sampling_interval_s}",
        "max_sessions = 4", "",
        "[[northbound.opcua.users]]", 'name = "operator"', f'password_hash = "{hash_password(PASSWORD)}"',
        'role = "operator"', "",
    ]
    for index, port in enumerate(unit_ports):
        lines += ["[[units]]", f'id = "{unit_name(index)}"', 'driver = "vendor_a"', 'chemistry = "lfp"',
                  "[units.modbus]", 'host = "127.0.0.1"', f"port = {port}", "unit_id = 1", ""]
    return "\n".join(lines)


def unit_name(index: int) -> str:
    return "flap" if index == 0 else f"u{index:03d}"


# ------------------------------------------------------------------------------ tracemalloc (investigation)

#: ``--tracemalloc``: the first SIGUSR2 starts tracing (after the warm-up: tracing the start-up, with
#: asyncua's address space, makes it minutes long), each later one dumps a snapshot
_TRACED_GATEWAY = """
import itertools, os, signal, sys, tracemalloc
_dumps = itertools.count()
def _dump(signum, frame):
    path = "{directory}/tm-%03d.snap" % next(_dumps)
    if tracemalloc.is_tracing():
        tracemalloc.take_snapshot().dump(path + ".part")
        os.replace(path + ".part", path)
    else:
        tracemalloc.start({frames})
        open(path, "wb").close()
signal.signal(signal.SIGUSR2, _dump)
from bessgw.cli import main
sys.exit(main(["run", "--config", {config!r}]))
"""


async def tracemalloc_snapshot(pid: int, directory: Path, index: int) -> Path | None:
    """Ask the traced gateway for snapshot ``index`` and wait (bounded) until it is written."""
    path = directory / f"tm-{index:03d}.snap"
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            return None
        await asyncio.sleep(0.2)
    return path


def tracemalloc_growth(first: Path, last: Path, top: int = 12) -> list[str]:
    """The allocation sites that grew most between two snapshots (bench process, after the run)."""
    import tracemalloc

    ignore = [tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
              tracemalloc.Filter(False, tracemalloc.__file__)]
    old = tracemalloc.Snapshot.load(str(first)).filter_traces(ignore)
    new = tracemalloc.Snapshot.load(str(last)).filter_traces(ignore)
    total = sum(stat.size_diff for stat in new.compare_to(old, "filename"))
    lines = [f"python heap change {total / 1024:+.0f} KiB between {first.name} and {last.name}; top sites:"]
    for stat in new.compare_to(old, "traceback")[:top]:
        recent = list(stat.traceback)[::-1][:5]  # tracemalloc keeps the oldest frame first
        frames = " <- ".join(f"{Path(f.filename).parent.name}/{Path(f.filename).name}:{f.lineno}" for f in recent)
        lines.append(f"  {stat.size_diff / 1024:+8.1f} KiB {stat.count_diff:+6d} blocks  {frames}")
    return lines


# ------------------------------------------------------------------------------ sampling


@dataclass
class Sample:
    """One look at the gateway process."""

    t_s: float
    rss_mb: float
    fds: int
    threads: int
    tasks: int | None
    cpu_s: float
    units_good: int | None
    notifications: int
    commands_sent: int
    commands_failed: int
    flaps: int
    sim_cpu_s: float  # the bulk simulator processes together (the machine's other big consumer)


def proc_figures(pid: int) -> tuple[float, int, int, float]:
    """RSS (MB), open fds, threads and CPU seconds (user + system) of ``pid`` from /proc."""
    rss_kb, threads = 0, 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15 of stat)
    return rss_kb / 1024.0, fds, threads, cpu_s


def slope_per_h(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t_s, value) in value units per hour."""
    if len(points) < 2:
        return float("nan")
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    if den == 0:
        return float("nan")
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / den * 3600.0


def trend(samples: list[tuple[float, float]]) -> dict[str, Any]:
    """first/last/min/max, the slope per hour, and whether the series grew.

    Grew: the median of the last third exceeds the largest value of the first third by more than
    max(2, 1 %): a connection or a task that comes and goes with the flapper is not growth, one more
    per flap is.
    """
    values = [v for _, v in samples]
    if not values:
        return {"first": None, "last": None, "min": None, "max": None, "slope_per_h": None, "grew": None}
    third = max(1, len(values) // 3)
    early = max(values[:third])
    grew = len(values) >= 3 and statistics.median(values[-third:]) > early + max(2.0, 0.01 * early)
    slope = slope_per_h(samples)
    return {"first": values[0], "last": values[-1], "min": min(values), "max": max(values),
            "slope_per_h": round(slope, 1) if math.isfinite(slope) else None, "grew": grew}


# ------------------------------------------------------------------------------ the load


class Counter:
    """asyncua subscription handler that only counts notifications (and subscription status changes)."""

    def __init__(self) -> None:
        self.notifications = 0
        self.status_changes = 0
        self.connection_losses = 0

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.notifications += 1

    def status_change_notification(self, status: Any) -> None:
        self.status_changes += 1

    async def connection_lost(self, exc: Exception) -> None:
        self.connection_losses += 1


@dataclass
class Load:
    """What the bench sent, and what went wrong (first few failure messages kept)."""

    sent: int = 0
    failed: int = 0
    repeats: int = 0
    repeats_failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    flaps: int = 0
    flap_restart_failures: int = 0

    def fail(self, message: str) -> None:
        self.failed += 1
        if len(self.errors) < 10:
            self.errors.append(message[:300])


async def admin(state_dir: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """One admin-socket request (what ``bessgw status`` / ``bessgw setpoint`` send), off the event loop."""
    from bessgw.daemon.admin import request, socket_path

    loop = asyncio.get_running_loop()
    reply = await asyncio.wait_for(
        loop.run_in_executor(None, request, socket_path(state_dir), payload, CALL_TIMEOUT_S), CALL_TIMEOUT_S + 1)
    if not reply.get("ok"):
        raise RuntimeError(f"admin {payload.get('cmd')}: {reply.get('error')}")
    return reply


async def connect_client(endpoint: str, counter: Counter) -> Any:
    """The SCADA-like subscriber: reconnects (and resubscribes) by itself, like a real SCADA client.

    Its liveness probe allows 5 s (asyncua's default is 1 s, which a loaded 2-core machine trips over
    without anything being wrong); every loss it detects is counted and reported.
    """
    from asyncua import Client

    client = Client(endpoint, timeout=30, watchdog_intervall=5.0, auto_reconnect=True)
    client.connection_lost_callback = counter.connection_lost
    client.set_user("operator")
    client.set_password(PASSWORD)
    deadline = time.monotonic() + 60
    while True:
        try:
            await asyncio.wait_for(client.connect(), 30)
            return client
        except (OSError, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def subscribe_everything(client: Any, counter: Counter, unit_count: int) -> tuple[Any, int, dict[str, Any]]:
    """Subscribe to every variable of the campus, the gateway and every unit; returns the unit nodes too.

    The server adds unit nodes one by one after it starts: wait (bounded) until all of them are there.
    """
    from asyncua import ua

    ns = await client.get_namespace_index(NAMESPACE_URI)
    campus = await client.nodes.objects.get_child([f"{ns}:Campus"])
    gateway = await campus.get_child([f"{ns}:Gateways", f"{ns}:{GATEWAY_ID}"])
    units_folder = await gateway.get_child([f"{ns}:Units"])
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(children := await units_folder.get_children()) < unit_count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(children)} of {unit_count} units in the OPC UA address space")
        await asyncio.sleep(1.0)
    units = {(await node.read_browse_name()).Name: node for node in children}
    variables = [*await campus.get_variables(), *await gateway.get_variables()]
    for node in units.values():
        variables += await node.get_variables()
    subscription = await client.create_subscription(
        ua.CreateSubscriptionParameters(RequestedPublishingInterval=500, RequestedLifetimeCount=3000,
                                        RequestedMaxKeepAliveCount=100, MaxNotificationsPerPublish=0,
                                        PublishingEnabled=True, Priority=0), counter)
    for start in range(0, len(variables), 1000):
        handles = await asyncio.wait_for(subscription.subscribe_data_change(variables[start:start + 1000]), 120)
        refused = [h for h in handles if not isinstance(h, int)]
        if refused:
            raise RuntimeError(f"monitored items refused: {refused[:3]}")
    return subscription, len(variables), {"ns": ns, "gateway": gateway, "units": units}


async def command_loop(client: Any, nodes: dict[str, Any], state_dir: Path, load: Load, stop_at: float) -> None:
    """One command a second until ``stop_at``: gateway-level (admin socket / OPC UA) and unit-level in turn."""
    from asyncua import ua

    ns = nodes["ns"]
    gateway_method = await nodes["gateway"].get_child([f"{ns}:SetPower"])
    unit_ids = sorted(name for name in nodes["units"] if name != "flap")  # the flapper refuses while down
    unit_methods: dict[str, Any] = {}
    rotation = itertools.cycle(unit_ids)
    previous: tuple[str, tuple[Any, ...]] | None = None
    loop = asyncio.get_running_loop()
    next_at = loop.time()

    async def send(kind: str, call: tuple[Any, ...]) -> Any:
        if kind == "admin":
            reply = await admin(state_dir, call[0])
            return reply["result"]["applied_p_kw"]
        node, p_kw, q_kvar, command_id = call
        method = gateway_method if node is None else unit_methods[node]
        parent = nodes["gateway"] if node is None else nodes["units"][node]
        return await asyncio.wait_for(parent.call_method(method, p_kw, q_kvar, command_id), CALL_TIMEOUT_S)

    for tick in itertools.count():
        if loop.time() >= stop_at:
            return
        next_at += 1.0
        if tick % 10 == 9 and previous is not None:  # the same command again: the same answer, no new effect
            kind, call = previous
            load.sent += 1
            load.repeats += 1
            load.by_kind["repeat"] = load.by_kind.get("repeat", 0) + 1
            try:
                await send(kind, call)
            except Exception as err:  # counted and reported
                load.repeats_failed += 1
                load.fail(f"repeat {kind}: {err!r}")
        else:
            if tick % 4 == 0:
                kind = "admin"
                call: tuple[Any, ...] = ({"cmd": "setpoint", "p_kw": round(random.uniform(-20000, 20000), 1),
                                          "q_kvar": 0.0, "command_id": f"soak-local-{tick}"},)
            elif tick % 2 == 0:
                kind = "ua_gateway"
                call = (None, round(random.uniform(-20000, 20000), 1), 0.0, f"soak-scada-{tick}")
            else:
                kind = "ua_unit"
                call = (next(rotation), round(random.uniform(-200, 200), 1), 0.0, f"soak-unit-{tick}")
            load.sent += 1
            load.by_kind[kind] = load.by_kind.get(kind, 0) + 1
            try:
                if kind == "ua_unit" and call[0] not in unit_methods:
                    unit_methods[call[0]] = await nodes["units"][call[0]].get_child([f"{ns}:SetPower"])
                await send(kind, call)
                previous = (kind, call)
            except (ua.UaStatusCodeError, RuntimeError, OSError, asyncio.TimeoutError) as err:
                load.fail(f"{kind} {call[-1] if kind != 'admin' else call[0]['command_id']}: {err!r}")
        await asyncio.sleep(max(0.0, next_at - loop.time()))


async def flap_loop(children: Children, tmp: Path, env: dict[str, str], port: int, holder: list[Any],
                    load: Load, args: argparse.Namespace, stop_at: float) -> None:
    """Kill the flapper's simulator every period and restart it on the same port after the down time."""
    loop = asyncio.get_running_loop()
    while loop.time() + args.flap_period_s < stop_at:
        await asyncio.sleep(max(0.0, args.flap_period_s - args.flap_down_s))
        children.stop(holder[0], signal.SIGKILL)
        load.flaps += 1
        await asyncio.sleep(args.flap_down_s)
        for _attempt in range(5):  # the port is ours, but another program may grab it meanwhile
            try:
                holder[0], _ = await start_simulator(children, tmp, "sim-flap", port, 1, env)
                break
            except RuntimeError:
                load.flap_restart_failures += 1
                await asyncio.sleep(1.0)
        else:
            raise RuntimeError(f"the flapping simulator could not be restarted on port {port}")


# ------------------------------------------------------------------------------ the run


def print_row(sample: Sample, previous: Sample | None, notifications_rate: float) -> None:
    span = sample.t_s - previous.t_s if previous else 0.0
    cpu_pct = 100.0 * (sample.cpu_s - previous.cpu_s) / span if previous and span > 0 else float("nan")
    sim_pct = 100.0 * (sample.sim_cpu_s - previous.sim_cpu_s) / span if previous and span > 0 else float("nan")
    print(f"{sample.t_s / 60:6.1f} {sample.rss_mb:8.1f} {sample.fds:5d} {sample.threads:5d} "
          f"{sample.tasks if sample.tasks is not None else '-':>6} {sample.cpu_s:8.1f} {cpu_pct:6.1f} "
          f"{notifications_rate:8.0f} {sample.commands_sent:6d} {sample.commands_failed:6d} {sample.flaps:5d} "
          f"{sample.units_good if sample.units_good is not None else '-':>5} {sim_pct:6.1f}", flush=True)


async def soak(args: argparse.Namespace, tmp: Path, children: Children) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    bulk = args.units - 1
    sims = math.ceil(bulk / args.units_per_sim) if bulk else 0
    unit_ports: list[int] = []
    flap_port = free_tcp_port()
    flapper, ports = await start_simulator(children, tmp, "sim-flap", flap_port, 1, env)
    unit_ports += ports
    sim_pids = []
    for index in range(sims):
        count = bulk // sims + (1 if index < bulk % sims else 0)
        proc, ports = await start_simulator(children, tmp, f"sim-{index}", 0, count, env)
        sim_pids.append(proc.pid)
        unit_ports += ports
    opcua_port = free_tcp_port()
    config = tmp / "gateway.toml"
    config.write_text(gateway_config(tmp, unit_ports, opcua_port, args), encoding="utf-8")
    state_dir = tmp / "state"
    if args.tracemalloc:
        code = _TRACED_GATEWAY.format(frames=8, directory=tmp, config=str(config))
        gateway = children.start([sys.executable, "-c", code], tmp / "gateway.log", env=env)
    else:
        gateway = children.start(bessgw("run", "--config", str(config)), tmp / "gateway.log", env=env)
    snapshots: list[Path] = []
    print(f"{args.units} vendor_a units ({sims} simulator processes + 1 flapping), poll {args.poll_interval_s} s, "
          f"gateway pid {gateway.pid}, logs in {tmp}", flush=True)

    started = time.monotonic()
    while True:  # every unit Good (the flapper included: it is up now)
        if gateway.poll() is not None:
            raise RuntimeError(f"gateway exited with {gateway.returncode}: "
                               f"{(tmp / 'gateway.log').read_text()[-3000:]}")
        if time.monotonic() - started > START_TIMEOUT_S:
            raise RuntimeError(f"gateway not ready within {START_TIMEOUT_S} s")
        try:
            status = await admin(state_dir, {"cmd": "status"})
            good = sum(unit["quality"] == "good" for unit in status["units"])
            if good == args.units:
                break
        except (OSError, RuntimeError, ValueError, asyncio.TimeoutError):
            pass
        await asyncio.sleep(1.0)
    print(f"gateway ready: {args.units} units Good after {time.monotonic() - started:.0f} s", flush=True)

    counter = Counter()
    client = await connect_client(f"opc.tcp://127.0.0.1:{opcua_port}/bessgw", counter)
    load = Load()
    samples: list[Sample] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        subscription, monitored, nodes = await subscribe_everything(client, counter, args.units)
        print(f"subscribed to {monitored} variables; running {args.minutes} min, a sample every {args.sample_s:.0f} s",
              flush=True)
        print("   min   rss MB   fds thrds  tasks    cpu s  cpu %  notif/s   cmds failed flaps  good  sim %",
              flush=True)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        stop_at = t0 + args.minutes * 60.0
        holder = [flapper]
        tasks = [loop.create_task(command_loop(client, nodes, state_dir, load, stop_at)),
                 loop.create_task(flap_loop(children, tmp, env, flap_port, holder, load, args, stop_at))]
        previous: Sample | None = None
        for index in itertools.count():
            at = t0 + index * args.sample_s
            if at > stop_at + 1e-6:
                break
            await asyncio.sleep(max(0.0, at - loop.time()))
            for task in tasks:
                if task.done() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            if gateway.poll() is not None:
                raise RuntimeError(f"gateway exited with {gateway.returncode} during the soak")
            tasks_count = units_good = None
            try:
                status = await admin(state_dir, {"cmd": "status"})
                tasks_count = status.get("tasks")
                units_good = sum(unit["quality"] == "good" for unit in status["units"])
            except (OSError, RuntimeError, ValueError, asyncio.TimeoutError) as err:
                load.fail(f"status: {err!r}")
            if args.tracemalloc and at >= t0 + min(0.2 * args.minutes * 60.0, 180.0) - 1e-6:
                snapshot = await tracemalloc_snapshot(gateway.pid, tmp, len(snapshots))
                if snapshot is not None:
                    snapshots.append(snapshot)  # the first is only the start of tracing
            rss_mb, fds, threads, cpu_s = proc_figures(gateway.pid)
            sim_cpu_s = sum(proc_figures(pid)[3] for pid in sim_pids)
            sample = Sample(round(loop.time() - t0, 1), round(rss_mb, 1), fds, threads, tasks_count, round(cpu_s, 2),
                            units_good, counter.notifications, load.sent, load.failed, load.flaps,
                            round(sim_cpu_s, 2))
            rate = ((sample.notifications - previous.notifications) / (sample.t_s - previous.t_s)
                    if previous and sample.t_s > previous.t_s else float("nan"))
            print_row(sample, previous, rate)
            samples.append(sample)
            previous = sample
        await asyncio.gather(*tasks)
        await asyncio.wait_for(subscription.delete(), 30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(client.disconnect(), 30)
        except Exception:  # the gateway may be gone already; figures matter more
            pass
    children.stop(gateway)
    if len(snapshots) >= 3:
        print("\n".join(tracemalloc_growth(snapshots[1], snapshots[-1])), flush=True)
    return report(args, samples, load, monitored, gateway.returncode, tmp / "gateway.log",
                  counter.connection_losses, counter.status_changes)


def log_levels(path: Path) -> dict[str, int]:
    """Gateway log lines by level (warnings and errors are worth a look after a soak)."""
    levels: dict[str, int] = {}
    with path.open("rb") as handle:
        for raw in handle:
            try:
                level = str(json.loads(raw).get("level", "?"))
            except ValueError:
                level = "unparsed"
            levels[level] = levels.get(level, 0) + 1
    return levels


def report(args: argparse.Namespace, samples: list[Sample], load: Load, monitored: int, exit_code: int | None,
           log: Path, losses: int, status_changes: int) -> dict[str, Any]:
    warmup_s = min(0.2 * args.minutes * 60.0, 180.0)
    steady = [s for s in samples if s.t_s >= warmup_s - 1e-6]
    rss0 = steady[0].rss_mb if steady else float("nan")
    rss_slope = slope_per_h([(s.t_s, s.rss_mb) for s in steady])
    growth = 100.0 * rss_slope / rss0 if steady and rss0 else float("nan")
    cpu_s = samples[-1].cpu_s - samples[0].cpu_s if len(samples) > 1 else float("nan")
    wall_s = samples[-1].t_s - samples[0].t_s if len(samples) > 1 else float("nan")
    notifications = samples[-1].notifications - samples[0].notifications if len(samples) > 1 else 0
    figures = {
        "minutes": args.minutes,
        "units": args.units,
        "poll_interval_s": args.poll_interval_s,
        "control_period_s": args.control_period_s,
        "sample_s": args.sample_s,
        "warmup_s": round(warmup_s, 1),
        "rss_mb": [s.rss_mb for s in samples],
        "rss_growth_pct_per_h": round(growth, 3) if math.isfinite(growth) else None,
        "rss_slope_mb_per_h": round(rss_slope, 2) if math.isfinite(rss_slope) else None,
        "fds": {"samples": [s.fds for s in samples], **trend([(s.t_s, s.fds) for s in steady])},
        "threads": {"samples": [s.threads for s in samples], **trend([(s.t_s, s.threads) for s in steady])},
        "tasks": {"samples": [s.tasks for s in samples],
                  **trend([(s.t_s, s.tasks) for s in steady if s.tasks is not None])},
        "cpu": {"gateway_s": round(cpu_s, 1) if math.isfinite(cpu_s) else None,
                "gateway_pct_of_core": round(100.0 * cpu_s / wall_s, 1) if wall_s and math.isfinite(wall_s) else None,
                "simulators_pct_of_core": (round(100.0 * (samples[-1].sim_cpu_s - samples[0].sim_cpu_s) / wall_s, 1)
                                           if wall_s and math.isfinite(wall_s) else None),
                "loadavg": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
        "monitored_items": monitored,
        "notifications_per_s": round(notifications / wall_s) if wall_s and math.isfinite(wall_s) else None,
        "subscriber_connection_losses": losses,
        "subscription_status_changes": status_changes,
        "units_good_min": min((s.units_good for s in samples if s.units_good is not None), default=None),
        "commands_sent": load.sent,
        "commands_failed": load.failed,
        "commands_by_kind": load.by_kind,
        "repeats": load.repeats,
        "repeats_failed": load.repeats_failed,
        "errors": load.errors,
        "flaps": load.flaps,
        "flap_restart_failures": load.flap_restart_failures,
        "gateway_exit_code": exit_code,
        "gateway_log_levels": log_levels(log),
    }
    nothing_grew = not any(figures[key]["grew"] for key in ("fds", "threads", "tasks"))
    figures["goal_met"] = bool(figures["rss_growth_pct_per_h"] is not None
                               and figures["rss_growth_pct_per_h"] < 1.0 and nothing_grew)
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the soak (default 30)")
    parser.add_argument("--units", type=int, default=200, help="vendor_a units, the flapper included (default 200)")
    parser.add_argument("--units-per-sim", type=int, default=50, help="containers per simulator process")
    parser.add_argument("--poll-interval-s", type=float, default=0.5, help="the config's poll interval")
    parser.add_argument("--sampling-interval-s", type=float, default=0.5, help="OPC UA server sampling")
    parser.add_argument("--control-period-s", type=float, default=0.5,
                        help="control period (default 0.5: SOC balancing rewrites every unit each period, and"
                             " 200 units x 10 writes/s starve the simulators on a 2-core machine)")
    parser.add_argument("--sample-s", type=float, help="sample period (default 60 s, at least 6 samples)")
    parser.add_argument("--flap-period-s", type=float, default=20.0, help="the flapper is killed this often")
    parser.add_argument("--flap-down-s", type=float, default=5.0, help="and restarted this much later")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="investigate: run the gateway under tracemalloc, print the sites that grew after the"
                             " warm-up (slows the gateway down; its figures are not comparable then)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, journal)")
    args = parser.parse_args(argv)
    if args.units < 2 or args.minutes <= 0 or args.units_per_sim < 1:
        parser.error("need --units >= 2, --minutes > 0, --units-per-sim >= 1")
    if not 0 < args.flap_down_s < args.flap_period_s:
        parser.error("need 0 < --flap-down-s < --flap-period-s")
    if args.sample_s is None:
        args.sample_s = min(60.0, args.minutes * 60.0 / 6)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # asyncua's client chatter (plain-text password, timeouts)
    tmp = Path(tempfile.mkdtemp(prefix="bessgw-soak-"))
    children = Children()
    figures: dict[str, Any] | None = None

    async def run() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await soak(args, tmp, children)

    try:
        figures = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
    finally:
        children.stop_all()
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if figures is None:
        return 130
    print(f"RSS growth after the {figures['warmup_s']:.0f} s warm-up: {figures['rss_growth_pct_per_h']} %/h "
          f"({figures['rss_slope_mb_per_h']} MB/h; goal < 1 %/h); grew: fds {figures['fds']['grew']}, threads "
          f"{figures['threads']['grew']}, tasks {figures['tasks']['grew']}; commands {figures['commands_sent']} sent,"
          f" {figures['commands_failed']} failed, {figures['repeats']} repeats; {figures['flaps']} flaps; "
          f"gateway CPU {figures['cpu']['gateway_pct_of_core']} % of a core")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
