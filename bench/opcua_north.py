"""Northbound OPC UA cost: 200 units, a client subscribed to every variable, SetPower latency.

Why: the northbound server shares one event loop with the poll loops (issue 6, item 4). This measures
whether a subscribe-to-everything SCADA client starves polling, what the gateway spends per published
value compared with bare asyncua ``write_attribute_value`` (the cheapest path, measured here in the same
run on the same server and nodes), and how long ``SetPower`` takes to reach the device.

The gateway side (200 in-memory units of docs/plugins.md, with noisy analog values so every poll changes
~10 values per unit, UnitSupervisors, the real ``OpcUaServer``) runs in a spawned subprocess so its CPU
time is separate from the client's; this process is the asyncua client over Basic256Sha256
SignAndEncrypt with an operator login (its certificate is trusted before the gateway starts).

Phases: (A) no client: poll timing, gateway CPU, the publisher's cost per written value; (bare) the same
server's unit nodes written with bare ``write_attribute_value`` of prebuilt DataValues, at the publisher's
cadence and timed per unit as the publisher is (and, for comparison with earlier runs, in one tight
loop); (B) a client subscribed to every variable of every unit: notifications/s delivered, poll timing,
gateway CPU, cost per value; (C) SetPower on every unit in turn with the subscription still active: call →
driver ``write_setpoint`` latency.

No arguments; about 2 minutes; ends with one JSON line of figures.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
UNITS = 200
POLL_INTERVAL_S = 0.5
SAMPLING_INTERVAL_S = 0.5
PHASE_S = 20.0
BARE_ROUNDS = 10
GATEWAY_ID = "gw-bench"
PASSWORD = "bench-operator"
NAMESPACE_URI = "urn:bessgw:opcua"
STEP_TIMEOUT_S = 120.0  # bound on any one exchange with the gateway process
#: the unit variables a subscribe-to-everything client monitors (docs/opcua.md, "Address space")
UNIT_VARIABLES = (
    "SocPct", "SohPct", "PowerKw", "ReactivePowerKvar", "DcVoltageV", "DcCurrentA", "CellTempMinC",
    "CellTempMaxC", "CellVoltageMinV", "CellVoltageMaxV", "MaxChargeKw", "MaxDischargeKw", "MaxReactiveKvar",
    "PowerSetpointKw", "ReactivePowerSetpointKvar", "State", "Connected", "QualityReason", "RefusedReason",
    "AlarmActive", "Alarms", "Warnings", "AlarmNames",
)
#: what bare write_attribute_value writes per unit per round: ten analog values (a noisy poll changes seven of
#: them; a Double write costs the same whichever node it is)
BARE_VARIABLES = ("SocPct", "PowerKw", "ReactivePowerKvar", "DcVoltageV", "DcCurrentA", "CellTempMinC",
                  "CellTempMaxC", "CellVoltageMinV", "CellVoltageMaxV", "SohPct")


def rss_mb() -> float:
    """This process's resident set size (Linux ``/proc``), in MB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100.0 * (len(ordered) - 1)))]


# ------------------------------------------------------------------------------------ gateway side


def gateway_main(conn: Any, tmp: str) -> None:
    """Entry point of the gateway subprocess: serve, and answer the client's measurement requests."""
    from bessgw.daemon.heap import fix_malloc_thresholds

    fix_malloc_thresholds()  # as the daemon does at start (run_gateway)
    asyncio.run(_gateway(conn, Path(tmp)))


async def _gateway(conn: Any, tmp: Path) -> None:
    import datetime as dt

    import structlog
    from asyncua import ua

    from bessgw.config import ControlSection, OpcUaSettings, OpcUaUser, UnitDefaults
    from bessgw.control.service import ControlService
    from bessgw.model import SiteLimits
    from bessgw.northbound import publisher as publisher_module
    from bessgw.northbound.passwords import hash_password
    from bessgw.northbound.server import OpcUaServer
    from bessgw.plugin import DriverContext
    from bessgw.plugin.manager import build_plugin_manager
    from bessgw.unit.directory import UnitDirectory
    from bessgw.unit.supervisor import UnitSupervisor

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up only
    example = re.search(r"```python\n(.*?)```", (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"), re.S)
    assert example, "docs/plugins.md lost its example plugin"
    (tmp / "bessgw_example.py").write_text(example.group(1), encoding="utf-8")
    sys.path.insert(0, str(tmp))
    from bessgw_example import InMemoryBattery

    loop = asyncio.get_running_loop()
    polls: dict[str, list[float]] = {}
    written: dict[tuple[str, float], int] = {}
    arrived: dict[tuple[str, float], int] = {}  # when the gateway's SetPower handler was entered
    publish_cost = [0.0]

    class NoisyBattery(InMemoryBattery):
        """The docs example with measurement noise on the analog values, so every poll changes them."""

        async def read(self):  # type: ignore[no-untyped-def]
            polls.setdefault(self.context.unit_id, []).append(loop.time())
            telemetry = await super().read()
            noise = random.random
            return replace(telemetry, dc_v=800.0 + noise(), dc_a=self.p_kw + noise(), q_kvar=noise(),
                           cell_temp_min_c=24.0 + noise(), cell_temp_max_c=26.0 + noise(),
                           cell_v_min=3.30 + noise() / 100, cell_v_max=3.34 + noise() / 100)

        async def write_setpoint(self, setpoint):  # type: ignore[no-untyped-def]
            written[(self.context.unit_id, setpoint.p_kw)] = time.monotonic_ns()
            await super().write_setpoint(setpoint)

    # the publisher's own time per unit and for the gateway node (its loop also yields; that is not its cost),
    # in CPU time of this thread, as the bare writes below: on a shared machine, wall time per slice mostly
    # measured when the scheduler preempted the process (the tight loop read 2-7x its quiet figure at load 4)
    for name in ("_publish_unit", "_publish_gateway"):
        original = getattr(publisher_module.Publisher, name)

        def timed(original: Any) -> Any:
            async def wrapper(self: Any, *args: Any) -> Any:
                started = time.thread_time()
                try:
                    return await original(self, *args)
                finally:
                    publish_cost[0] += time.thread_time() - started
            return wrapper

        setattr(publisher_module.Publisher, name, timed(original))

    # the gateway's own share of SetPower latency: from the method handler to the driver (the rest is the
    # client, the wire, the secure channel, and waiting for the gateway's loop to read the request)
    from bessgw.northbound.methods import CommandHandler
    set_unit_power = CommandHandler.set_unit_power

    async def arrival_timed(self: Any, unit_id: str, p_kw: float, *args: Any, **kwargs: Any) -> Any:
        arrived[(unit_id, p_kw)] = time.monotonic_ns()
        return await set_unit_power(self, unit_id, p_kw, *args, **kwargs)

    CommandHandler.set_unit_power = arrival_timed  # type: ignore[method-assign]

    registry = build_plugin_manager(modules=["bessgw_example"]).collect()
    spec = registry.drivers["in_memory"]
    timing = UnitDefaults(poll_interval_s=POLL_INTERVAL_S, stale_after_s=5.0, bad_after_s=15.0,
                          heartbeat_interval_s=5.0)
    directory = UnitDirectory()
    supervisors = []
    tasks = []
    for index in range(UNITS):
        unit_id = f"u{index:03d}"
        driver = NoisyBattery(DriverContext(unit_id=unit_id, link=None,
                                            options=spec.unit_options(energy_kwh=1000, power_kw=500, soc_pct=60)))
        supervisor = UnitSupervisor(unit_id, driver, spec, timing, SiteLimits(), registry.chemistries,
                                    log=structlog.get_logger("bench-unit"))
        supervisors.append(supervisor)
        tasks.append(loop.create_task(supervisor.run()))
        directory.add(supervisor)
    settings = OpcUaSettings(
        enabled=True, endpoint="opc.tcp://127.0.0.1:0/bessgw", security_policies=["Basic256Sha256_SignAndEncrypt"],
        users=[OpcUaUser(name="operator", password_hash=hash_password(PASSWORD), role="operator")],
        sampling_interval_s=SAMPLING_INTERVAL_S, pki_dir=tmp / "pki", max_sessions=4,
    )
    # the daemon's control plane (default [control]): SetPower is journaled, arbitrated and written by its loop
    control = ControlService(ControlSection(), supervisors, tmp / "state", structlog.get_logger("bench-control"))
    tasks.append(loop.create_task(control.run()))
    server = OpcUaServer(settings, GATEWAY_ID, directory, tmp / "state", structlog.get_logger("bench-opcua"),
                         control=lambda: control)
    server_task = loop.create_task(server.run())
    started = time.monotonic()
    waiter = loop.create_task(server.started.wait())
    await asyncio.wait({waiter, server_task}, timeout=STEP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
    if not waiter.done():
        raise SystemExit(f"OPC UA server did not start: {server_task}")
    for supervisor in supervisors:
        while supervisor.limits is None:
            await supervisor.wait_update(STEP_TIMEOUT_S)
    publisher = server.publisher
    assert publisher is not None
    from bessgw.daemon.heap import freeze_startup_heap

    # as the daemon does once started (before READY): the start-up heap frozen, the collector's thresholds
    # raised. Without it a young collection ran every ~700 allocations, mostly inside the publisher (it
    # builds the DataValues; the bare writes below write prebuilt ones), and was counted as its cost.
    freeze_startup_heap()
    conn.send({"endpoint": server.endpoint_url, "startup_s": round(time.monotonic() - started, 1)})

    async def measure(seconds: float) -> dict[str, Any]:
        for samples in polls.values():
            samples.clear()
        cpu0, wall0 = time.process_time(), time.monotonic()
        written0, cost0 = publisher.values_written, publish_cost[0]
        timeouts0 = control.loop.write_timeouts
        await asyncio.sleep(seconds)  # the measured window itself: the gateway runs as usual meanwhile
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        polled = sum(len(samples) for samples in polls.values())
        values, cost = publisher.values_written - written0, publish_cost[0] - cost0
        intervals = [(b - a) * 1000.0 for samples in polls.values() for a, b in itertools.pairwise(samples)]
        return {
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cpu_pct_of_core": round(100.0 * cpu / wall, 1),
            "values_written": values, "values_per_s": round(values / wall),
            "publish_us_per_value": round(cost / values * 1e6, 2) if values else None,
            "poll_cycles": len(intervals),
            "poll_cycle_ms_p50": round(percentile(intervals, 50), 1),
            "poll_cycle_ms_p99": round(percentile(intervals, 99), 1),
            "poll_cycle_ms_max": round(max(intervals, default=float("nan")), 1),
            "rss_mb": round(rss_mb(), 1),
            "poll_rate_pct": round(100.0 * polled / (UNITS * wall / POLL_INTERVAL_S), 2),
            "control_write_timeouts": control.loop.write_timeouts - timeouts0,
        }

    async def bare(rounds: int) -> dict[str, Any]:
        """Bare write_attribute_value of prebuilt DataValues to the same server's unit nodes, two ways.

        ``us_per_value`` — at the publisher's cadence, so both sides run in the same conditions: each
        sampling interval in the publisher's parts (one every 0.1 s), each part's units written back to
        back, each unit's values timed as one slice as the publisher's ``_publish_unit`` is (between
        slices the poll loops run, as they do between the publisher's units and parts).
        ``tight_us_per_value`` — all units in one loop per round, as this bench measured before: warm
        caches on a quiet machine (flatters the bare call), one long CPU burst that a loaded machine's
        scheduler preempts (flatters the publisher); kept for comparison with earlier figures.
        """
        units = [[entry[1].instance.child(name) for name in BARE_VARIABLES] for entry in publisher.units.values()]
        write = publisher.server.write_attribute_value
        good = ua.StatusCode(ua.StatusCodes.Good)

        def prepared(nodes: list[Any]) -> list[ua.DataValue]:
            now = dt.datetime.now(dt.timezone.utc)
            return [ua.DataValue(ua.Variant(random.random(), ua.VariantType.Double), StatusCode=good,
                                 SourceTimestamp=now, ServerTimestamp=now) for _ in nodes]

        parts = max(1, round(SAMPLING_INTERVAL_S / publisher_module._PART_S))
        step_s = SAMPLING_INTERVAL_S / parts
        spent, written = 0.0, 0
        next_at = loop.time()
        for _ in range(rounds):
            for part in range(parts):
                share = units[part::parts]
                values = [prepared(nodes) for nodes in share]
                for nodes, unit_values in zip(share, values, strict=True):
                    started = time.thread_time()
                    for node, value in zip(nodes, unit_values, strict=True):
                        await write(node, value)
                    spent += time.thread_time() - started
                    written += len(nodes)
                next_at += step_s
                await asyncio.sleep(max(0.0, next_at - loop.time()))
        tight_spent = 0.0
        nodes = [node for unit_nodes in units for node in unit_nodes]
        for _ in range(rounds):
            values = prepared(nodes)
            started = time.thread_time()
            for node, value in zip(nodes, values, strict=True):
                await write(node, value)
            tight_spent += time.thread_time() - started
            await asyncio.sleep(0)
        return {"values": written, "us_per_value": round(spent / written * 1e6, 2),
                "tight_us_per_value": round(tight_spent / (rounds * len(nodes)) * 1e6, 2)}

    try:
        while True:
            request = await loop.run_in_executor(None, conn.recv)
            if request[0] == "measure":
                conn.send(await measure(request[1]))
            elif request[0] == "bare":
                conn.send(await bare(request[1]))
            elif request[0] == "written":
                conn.send((dict(written), dict(arrived)))
            elif request[0] == "write_timeouts":
                conn.send(control.loop.write_timeouts)
            else:
                break
    finally:
        server_task.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(server_task, *tasks, return_exceptions=True)


# ------------------------------------------------------------------------------------- client side


class Counter:
    """asyncua subscription handler that only counts (the client's own cost is not what is measured)."""

    def __init__(self) -> None:
        self.notifications = 0
        self.status_changes: list[str] = []

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.notifications += 1

    def status_change_notification(self, status: Any) -> None:
        """The server ended or degraded the subscription (e.g. BadTimeout when the client fell behind)."""
        self.status_changes.append(str(getattr(status, "Status", status)))
        print(f"subscription status change: {self.status_changes[-1]}", file=sys.stderr, flush=True)


async def connect_operator(endpoint: str, cert: Path, key: Path, uri: str, password: str) -> Any:
    """An asyncua client over Basic256Sha256 SignAndEncrypt, logged in as ``operator`` (its certificate is
    trusted by the gateway before it starts)."""
    from asyncua import Client, ua
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

    # the bench client shares 2 cores with the gateway and other work: its 1 s default watchdog would
    # disconnect on a starved second of its own, which is not what is measured here
    client = Client(endpoint, timeout=30, watchdog_intervall=10.0)
    client.application_uri = uri
    await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(cert), private_key=str(key),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    client.set_user("operator")
    client.set_password(password)
    await asyncio.wait_for(client.connect(), 30)
    return client


async def subscribe_everything(client: Any, ns: int, gateway_id: str, unit_ids: list[str],
                               counter: Counter) -> tuple[Any, int, float]:
    """Subscribe to every variable of every unit (what a SCADA client showing everything does) and wait
    for the initial values (one notification per item, bounded).

    Returns the subscription, the number of monitored items and the seconds the subscribe calls took.
    """
    from asyncua import ua

    nodes = [client.get_node(ua.NodeId(f"Unit/{gateway_id}/{unit}.{name}", ns))
             for unit in unit_ids for name in UNIT_VARIABLES]
    subscription = await client.create_subscription(
        ua.CreateSubscriptionParameters(RequestedPublishingInterval=100, RequestedLifetimeCount=3000,
                                        RequestedMaxKeepAliveCount=100, MaxNotificationsPerPublish=0,
                                        PublishingEnabled=True, Priority=0), counter)
    started = time.monotonic()
    for start in range(0, len(nodes), 1000):
        handles = await asyncio.wait_for(subscription.subscribe_data_change(nodes[start:start + 1000]), 60)
        bad = [h for h in handles if not isinstance(h, int)]
        assert not bad, f"monitored items refused: {bad[:3]}"
    subscribe_s = time.monotonic() - started
    initial_deadline = time.monotonic() + 30  # initial values: one notification per item
    while counter.notifications < len(nodes) and time.monotonic() < initial_deadline:
        await asyncio.sleep(0.1)
    return subscription, len(nodes), subscribe_s


async def set_power_everywhere(client: Any, ns: int, ask: Any, tag: str) -> dict[str, Any]:
    """SetPower on every unit in turn; call → driver write_setpoint latency (one monotonic clock, two processes)."""
    from asyncua import ua

    sent: dict[tuple[str, float], int] = {}
    returned: list[float] = []
    for index in range(UNITS):
        unit = f"u{index:03d}"
        p_kw = round(-400.0 + index * 3.5 + random.random(), 3)  # distinct per call, within ±500 kW
        node = client.get_node(ua.NodeId(f"Unit/{GATEWAY_ID}/{unit}", ns))
        t0 = time.monotonic_ns()
        await asyncio.wait_for(node.call_method(ua.QualifiedName("SetPower", ns), p_kw, 0.0, f"bench-{tag}-{unit}"),
                               10)
        returned.append((time.monotonic_ns() - t0) / 1e6)
        sent[(unit, p_kw)] = t0
    written, arrived = await ask("written")
    reached = [(written[key] - t0) / 1e6 for key, t0 in sent.items() if key in written]
    inside = [(written[key] - arrived[key]) / 1e6 for key in sent if key in written and key in arrived]
    return {
        "calls": len(sent), "reached_device": len(reached),
        "to_device_ms_p50": round(percentile(reached, 50), 2),
        "to_device_ms_p99": round(percentile(reached, 99), 2),
        "handler_to_device_ms_p50": round(percentile(inside, 50), 2),
        "handler_to_device_ms_p99": round(percentile(inside, 99), 2),
        "call_return_ms_p50": round(percentile(returned, 50), 2),
        "call_return_ms_p99": round(percentile(returned, 99), 2),
    }


async def client_side(conn: Any, endpoint: str, cert: Path, key: Path, uri: str) -> dict[str, Any]:
    loop = asyncio.get_running_loop()

    async def ask(*request: Any) -> Any:
        conn.send(request)
        return await asyncio.wait_for(loop.run_in_executor(None, conn.recv), STEP_TIMEOUT_S + PHASE_S)

    figures: dict[str, Any] = {}
    figures["no_subscriber"] = await ask("measure", PHASE_S)
    figures["bare_write_attribute_value"] = await ask("bare", BARE_ROUNDS)

    client = await connect_operator(endpoint, cert, key, uri, PASSWORD)
    try:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        figures["setpower_no_subscriber"] = await set_power_everywhere(client, ns, ask, "nosub")
        counter = Counter()
        subscription, items, subscribe_s = await subscribe_everything(
            client, ns, GATEWAY_ID, [f"u{index:03d}" for index in range(UNITS)], counter)
        figures["monitored_items"] = items
        figures["subscribe_s"] = round(subscribe_s, 1)
        before, started = counter.notifications, time.monotonic()
        with_subscriber = await ask("measure", PHASE_S)
        delivered = counter.notifications - before
        with_subscriber["notifications_delivered"] = delivered
        with_subscriber["notifications_per_s"] = round(delivered / (time.monotonic() - started))
        figures["with_subscriber"] = with_subscriber

        figures["bare_write_attribute_value_subscribed"] = await ask("bare", BARE_ROUNDS)
        figures["setpower_subscribed"] = await set_power_everywhere(client, ns, ask, "sub")
        figures["control_write_timeouts"] = await ask("write_timeouts")  # over the whole run
        await subscription.delete()
    finally:
        await asyncio.wait_for(client.disconnect(), 30)
    return figures


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from bessgw.northbound.certificates import CertificateFiles, ensure_certificate

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-opcua-") as tmp_name:
        tmp = Path(tmp_name)
        uri = "urn:bessgw-bench:client"
        files = ensure_certificate(CertificateFiles(tmp / "pki" / "trusted" / "client.der", tmp / "client.pem"), uri,
                                   "bench client", client=True, hostnames=("localhost",))
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        gateway = context.Process(target=gateway_main, args=(child, tmp_name), name="gateway", daemon=True)
        gateway.start()
        try:
            if not parent.poll(STEP_TIMEOUT_S):
                raise SystemExit("gateway process did not become ready")
            ready = parent.recv()
            print(f"gateway ready in {ready['startup_s']} s at {ready['endpoint']} with {UNITS} units", flush=True)
            figures = asyncio.run(client_side(parent, ready["endpoint"], files.certificate, files.private_key, uri))
            parent.send(("stop",))
            gateway.join(30)
        finally:
            if gateway.is_alive():
                gateway.kill()
                gateway.join(10)
    no_sub, with_sub = figures["no_subscriber"], figures["with_subscriber"]
    bare, bare_sub = figures["bare_write_attribute_value"], figures["bare_write_attribute_value_subscribed"]
    ratio = no_sub["publish_us_per_value"] / bare["us_per_value"] if no_sub["publish_us_per_value"] else None
    ratio_sub = (with_sub["publish_us_per_value"] / bare_sub["us_per_value"]
                 if with_sub["publish_us_per_value"] else None)
    print(f"units {UNITS}, poll {POLL_INTERVAL_S} s, sampling {SAMPLING_INTERVAL_S} s, "
          f"{figures['monitored_items']} monitored items (Basic256Sha256 SignAndEncrypt)")
    for name, phase in (("no subscriber", no_sub), ("subscribed", with_sub)):
        print(f"  {name:<13}: gateway CPU {phase['cpu_pct_of_core']} % of a core, {phase['values_per_s']} values/s "
              f"written at {phase['publish_us_per_value']} us/value, poll cycle p50 {phase['poll_cycle_ms_p50']} ms "
              f"p99 {phase['poll_cycle_ms_p99']} ms max {phase['poll_cycle_ms_max']} ms (nominal "
              f"{POLL_INTERVAL_S * 1000:.0f} ms)")
    print(f"  gateway RSS: {no_sub['rss_mb']} MB without a client, {with_sub['rss_mb']} MB with the client "
          f"subscribed to everything (target <= 150 MB)")
    print(f"  poll rate: {no_sub['poll_rate_pct']} % without a client, {with_sub['poll_rate_pct']} % subscribed "
          f"(target >= 99.5 %); control write timeouts over the run: {figures['control_write_timeouts']} (target 0)")
    print(f"  notifications delivered: {with_sub['notifications_per_s']}/s")
    print(f"  bare write_attribute_value: {bare['us_per_value']} us/value ({bare_sub['us_per_value']} us/value with"
          f" the subscriber); gateway/bare ratio {ratio and round(ratio, 2)} (no subscriber),"
          f" {ratio_sub and round(ratio_sub, 2)} (subscribed), both at the publisher's cadence (target <= 1.5 without a"
          f" subscriber); in one tight loop {bare['tight_us_per_value']} us/value ({bare_sub['tight_us_per_value']}"
          f" subscribed)")
    for name, sp in (("no subscriber", figures["setpower_no_subscriber"]),
                     ("subscribed", figures["setpower_subscribed"])):
        print(f"  SetPower -> device write ({name}): p50 {sp['to_device_ms_p50']} ms, p99 {sp['to_device_ms_p99']} ms"
              f" (target p99 < 50 ms), {sp['reached_device']}/{sp['calls']} reached; of which gateway handler ->"
              f" device p50 {sp['handler_to_device_ms_p50']} ms, p99 {sp['handler_to_device_ms_p99']} ms")
    sp, sp0 = figures["setpower_subscribed"], figures["setpower_no_subscriber"]
    summary = {
        "units": UNITS, "monitored_items": figures["monitored_items"], "poll_interval_s": POLL_INTERVAL_S,
        "sampling_interval_s": SAMPLING_INTERVAL_S,
        "notifications_per_s": with_sub["notifications_per_s"],
        "gateway_cpu_pct_no_sub": no_sub["cpu_pct_of_core"], "gateway_cpu_pct_sub": with_sub["cpu_pct_of_core"],
        "poll_cycle_ms_p99_no_sub": no_sub["poll_cycle_ms_p99"], "poll_cycle_ms_p99_sub": with_sub["poll_cycle_ms_p99"],
        "setpower_ms_p50_no_sub": sp0["to_device_ms_p50"], "setpower_ms_p99_no_sub": sp0["to_device_ms_p99"],
        "setpower_ms_p50_sub": sp["to_device_ms_p50"], "setpower_ms_p99_sub": sp["to_device_ms_p99"],
        "setpower_reached": sp0["reached_device"] + sp["reached_device"],
        "setpower_handler_ms_p99_no_sub": sp0["handler_to_device_ms_p99"],
        "setpower_handler_ms_p99_sub": sp["handler_to_device_ms_p99"],
        "update_us_per_value_no_sub": no_sub["publish_us_per_value"],
        "update_us_per_value_sub": with_sub["publish_us_per_value"],
        "bare_write_attribute_value_us_no_sub": bare["us_per_value"],
        "bare_write_attribute_value_us_sub": bare_sub["us_per_value"],
        "bare_tight_loop_us_no_sub": bare["tight_us_per_value"],
        "bare_tight_loop_us_sub": bare_sub["tight_us_per_value"],
        "ratio_vs_bare_tight_loop_no_sub": no_sub["publish_us_per_value"] and round(
            no_sub["publish_us_per_value"] / bare["tight_us_per_value"], 2),
        "ratio_vs_bare_no_sub": ratio and round(ratio, 2), "ratio_vs_bare_sub": ratio_sub and round(ratio_sub, 2),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "rss_mb_no_sub": no_sub["rss_mb"], "rss_mb_sub": with_sub["rss_mb"],
        "poll_rate_pct_no_sub": no_sub["poll_rate_pct"], "poll_rate_pct_sub": with_sub["poll_rate_pct"],
        "control_write_timeouts": figures["control_write_timeouts"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
