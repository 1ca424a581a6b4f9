"""Simulated vendor_c BMS nodes on a python-can bus, driven by a chemistry model.

Every node runs the same vectorised equivalent circuit (one row per node), sends its cyclic frames at
their real period (status, cells, limits 100 ms; alarms 500 ms; capacity, identity 1 s), obeys the
gateway's commands (power, contactors, fault reset) and keeps its own heartbeat watchdog: without a
gateway heartbeat for ``watchdog_s`` it opens its contactors and drops to 0 kW, and stays open until
commanded closed again.

Tests drive the fault knobs through the object API (:meth:`VendorCSimulator.silence`,
:meth:`~VendorCSimulator.corrupt`, :meth:`~VendorCSimulator.flood`, ...). ``bessgw sim vendor_c`` runs
it from the command line. The ``virtual`` interface only connects buses in one process, so the daemon
runs configured simulators in its own process; a simulator in another process needs a real bus
(socketcan with a ``vcan`` device on Linux, or hardware).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import can
import numpy as np

from bessgw.plugin import ChemistryModel, DeviceProtocolError, PluginError, SimulatorContext, SimulatorSpec
from bessgw_vendor_c import protocol as p

#: ticks of the 100 ms base period between the slower cyclic frames
_ALARM_TICKS, _SLOW_TICKS = 5, 10
_COMMAND_FILTERS = [
    {"can_id": p.frame_id(p.SETPOINT, 0), "can_mask": 0x1FFFFE00, "extended": True},  # setpoint + control
    {"can_id": p.frame_id(p.HEARTBEAT, 0), "can_mask": 0x1FFFFF00, "extended": True},
]


@dataclass
class NodeState:
    """One simulated BMS node: what the gateway asked, what the BMS decided, what tests injected."""

    node_id: int
    serial: int
    p_setpoint_kw: float = 0.0
    q_setpoint_kvar: float = 0.0
    contactors_closed: bool = False
    fault_latched: bool = False
    watchdog_tripped: bool = False
    last_heartbeat: float | None = None  # time.monotonic()
    heartbeats: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=100_000))
    commands: deque[tuple[str, dict[str, float]]] = field(default_factory=lambda: deque(maxlen=10_000))
    command_times: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))
    silent: bool = False
    corrupt_mode: str = ""
    corrupt_left: int = 0
    charge_a_override: float | None = None
    discharge_a_override: float | None = None
    frames_sent: int = 0


class VendorCSimulator:
    """``count`` BMS nodes with ids ``first_node_id ...`` on one bus."""

    def __init__(
        self,
        chemistry: ChemistryModel,
        *,
        interface: str = "virtual",
        channel: str = "bessgw0",
        bitrate: int | None = None,
        count: int = 1,
        first_node_id: int = 1,
        energy_kwh: float = 3440.0,
        soc_pct: float = 50.0,
        temp_c: float = 25.0,
        ambient_c: float = 25.0,
        watchdog_s: float = 1.0,
        period_s: float = 0.1,
        firmware: tuple[int, int, int] = (2, 4, 1),
        protocol_version: int = p.PROTOCOL_MAJOR,
        log: Any = None,
    ) -> None:
        if not 1 <= count <= 256 or not 0 <= first_node_id <= 256 - count:
            raise ValueError(f"nodes {first_node_id}..{first_node_id + count - 1} do not fit in 0..255")
        self.chemistry = chemistry
        self.interface, self.channel, self.bitrate = interface, channel, bitrate
        self.energy_kwh = energy_kwh
        self.ambient_c = ambient_c
        self.watchdog_s = watchdog_s
        self.period_s = period_s
        self.firmware = firmware
        self.protocol_version = protocol_version
        self.log = log
        self.nodes = {first_node_id + i: NodeState(first_node_id + i, 40_000_000 + first_node_id + i)
                      for i in range(count)}
        self._ids = np.array(sorted(self.nodes))
        self.circuit = chemistry.equivalent_circuit(count, energy_kwh, soc_pct=soc_pct, temp_c=temp_c)
        self.series_cells = max(1, round(float(self.circuit.pack_v[0] / self.circuit.cell_v[0])))
        self.nominal_v = self.series_cells * chemistry.cell_v_nominal
        self.capacity_ah = energy_kwh * 1000.0 / self.nominal_v
        self.malformed_commands = 0
        self.ticks = 0
        self._bus: can.BusABC | None = None
        self._notifier: can.Notifier | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flood_stop = threading.Event()
        self._flood_thread: threading.Thread | None = None
        self.flood_sent = 0

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the bus and start sending; returns once the first frames are out."""
        self._loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"interface": self.interface, "channel": self.channel,
                                  "can_filters": _COMMAND_FILTERS}
        if self.bitrate:
            kwargs["bitrate"] = self.bitrate
        self._bus = can.Bus(**kwargs)
        loop = self._loop
        self._notifier = can.Notifier(self._bus, [lambda m: loop.call_soon_threadsafe(self._on_command, m)],
                                      timeout=0.1)
        self._tick(0.0)
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop sending and release the bus (bounded: the reader thread wakes every 0.1 s)."""
        self.stop_flood()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        notifier, bus = self._notifier, self._bus
        self._notifier = self._bus = None
        if bus is not None:
            await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(None, _close, notifier, bus), 5.0)

    async def __aenter__(self) -> VendorCSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = last = loop.time()
        while True:
            next_at += self.period_s
            now = loop.time()
            if next_at < now:
                next_at = now + self.period_s
            await asyncio.sleep(next_at - now)
            now = loop.time()
            self._tick(now - last)
            last = now

    # ------------------------------------------------------------------------------ physics

    def limits_a(self) -> tuple[np.ndarray, np.ndarray]:
        """The charge / discharge currents each node's BMS allows right now (overrides applied)."""
        c = self.circuit
        charge = self.chemistry.max_charge_c * self.capacity_ah * np.clip(
            self.chemistry.charge_derating(c.temp_c, c.soc_pct), 0.0, 1.0)
        discharge = self.chemistry.max_discharge_c * self.capacity_ah * np.clip(
            self.chemistry.discharge_derating(c.temp_c, c.soc_pct), 0.0, 1.0)
        for i, node_id in enumerate(self._ids):
            node = self.nodes[int(node_id)]
            if node.charge_a_override is not None:
                charge[i] = node.charge_a_override
            if node.discharge_a_override is not None:
                discharge[i] = node.discharge_a_override
        return np.nan_to_num(charge), np.nan_to_num(discharge)

    def _tick(self, dt_s: float) -> None:
        now = time.monotonic()
        charge_a, discharge_a = self.limits_a()
        pack_v = np.asarray(self.circuit.pack_v, dtype=float)
        power = np.zeros(len(self._ids))
        for i, node_id in enumerate(self._ids):
            node = self.nodes[int(node_id)]
            if node.contactors_closed and (node.last_heartbeat is None or now - node.last_heartbeat > self.watchdog_s):
                node.contactors_closed = False
                node.watchdog_tripped = True
                node.p_setpoint_kw = 0.0
            if node.contactors_closed and not node.fault_latched:
                power[i] = min(discharge_a[i] * pack_v[i] / 1000.0,
                               max(-charge_a[i] * pack_v[i] / 1000.0, node.p_setpoint_kw))
        if dt_s > 0:
            self.circuit.step(power, dt_s, self.ambient_c)
        self.ticks += 1
        self._send_cyclic(charge_a, discharge_a)

    def _send_cyclic(self, charge_a: np.ndarray, discharge_a: np.ndarray) -> None:
        c = self.circuit
        alarms_due = self.ticks % _ALARM_TICKS == 1
        slow_due = self.ticks % _SLOW_TICKS == 1
        for i, node_id in enumerate(self._ids):
            node = self.nodes[int(node_id)]
            if node.silent:
                continue
            soc, temp, cell_v = float(c.soc_pct[i]), float(c.temp_c[i]), float(c.cell_v[i])
            state = (p.STATE_FAULT if node.fault_latched else
                     p.STATE_RUNNING if node.contactors_closed else p.STATE_STANDBY)
            status = self._encode(p.STATUS, node.node_id, SOC=soc, SOH=98.0, PackVoltage=float(c.pack_v[i]),
                                  PackCurrent=float(c.pack_a[i]), BmsState=state,
                                  ContactorsClosed=int(node.contactors_closed),
                                  WatchdogTripped=int(node.watchdog_tripped))
            self._send(node, self._corrupted(node, status))
            self._send(node, self._encode(p.CELLS, node.node_id, CellVoltageMin=cell_v - 0.004,
                                          CellVoltageMax=cell_v + 0.004, CellTempMin=round(temp - 1.0),
                                          CellTempMax=round(temp + 1.0)))
            self._send(node, self._encode(
                p.LIMITS, node.node_id, MaxChargeCurrent=float(charge_a[i]),
                MaxDischargeCurrent=float(discharge_a[i]),
                MaxChargeVoltage=self.series_cells * self.chemistry.cell_v_max,
                MinDischargeVoltage=self.series_cells * self.chemistry.cell_v_min))
            if alarms_due:
                self._send(node, self._encode(
                    p.ALARMS, node.node_id,
                    OverTemperature=int(temp > self.chemistry.temp_max_c),
                    UnderTemperature=int(temp < self.chemistry.temp_min_c),
                    WatchdogTimeout=int(node.watchdog_tripped), FaultLatched=int(node.fault_latched),
                    Warnings=int(node.watchdog_tripped)))
            if slow_due:
                self._send(node, self._encode(p.CAPACITY, node.node_id, RatedEnergy=self.energy_kwh,
                                              SeriesCells=self.series_cells, NominalVoltage=self.nominal_v))
                major, minor, patch = self.firmware
                self._send(node, self._encode(p.IDENTITY, node.node_id, FirmwareMajor=major,
                                              FirmwareMinor=minor, FirmwarePatch=patch,
                                              ProtocolVersion=self.protocol_version,
                                              SerialNumber=node.serial))

    @staticmethod
    def _encode(name: str, node_id: int, **signals: float) -> can.Message:
        frame = p.encode(name, node_id, **p.clip(name, signals))
        return can.Message(arbitration_id=frame.arbitration_id, data=frame.data, is_extended_id=True)

    def _corrupted(self, node: NodeState, message: can.Message) -> can.Message:
        if node.corrupt_left <= 0:
            return message
        node.corrupt_left -= 1
        if node.corrupt_mode == "short":
            message.data = message.data[:3]
            message.dlc = 3
        else:  # "range": SOC raw 0xFFFF = 655.35 %
            message.data[0:2] = b"\xff\xff"
        return message

    def _send(self, node: NodeState, message: can.Message) -> None:
        if self._bus is None:
            return
        try:
            self._bus.send(message, timeout=0.1)
            node.frames_sent += 1
        except can.CanError as err:
            if self.log is not None:
                self.log.warning("vendor_c_sim_send_failed", node_id=node.node_id, error=str(err))

    # ------------------------------------------------------------------------------ commands

    def _on_command(self, message: can.Message) -> None:
        parsed = p.split_id(message.arbitration_id)
        if parsed is None or parsed[1] not in self.nodes:
            return
        name, node_id = parsed
        node = self.nodes[node_id]
        try:
            values = p.decode(name, bytes(message.data))
        except DeviceProtocolError:
            self.malformed_commands += 1
            return
        now = time.monotonic()
        if name == p.HEARTBEAT:
            node.last_heartbeat = now
            node.heartbeats.append((now, int(values["HeartbeatCounter"])))
        elif name == p.SETPOINT:
            node.p_setpoint_kw = values["PowerSetpoint"]
            node.q_setpoint_kvar = values["ReactiveSetpoint"]
        elif name == p.CONTROL:
            if values["FaultReset"]:
                node.fault_latched = False
                node.watchdog_tripped = False
            request = int(values["ContactorRequest"])
            heartbeat_ok = node.last_heartbeat is not None and now - node.last_heartbeat <= self.watchdog_s
            if request == p.CONTACTOR_CLOSE and heartbeat_ok and not node.fault_latched:
                node.contactors_closed = True
                node.watchdog_tripped = False
            elif request == p.CONTACTOR_OPEN:
                node.contactors_closed = False
        if name != p.HEARTBEAT:
            node.commands.append((name, values))
            node.command_times.append(now)

    # ------------------------------------------------------------------------------ fault knobs

    def silence(self, node_id: int, silent: bool = True) -> None:
        """Stop (or resume) every cyclic frame of a node; its physics goes on."""
        self.nodes[node_id].silent = silent

    def corrupt(self, node_id: int, mode: str = "short", frames: int = 1) -> None:
        """Corrupt the node's next ``frames`` status frames: ``short`` (3 bytes) or ``range`` (SOC 655 %)."""
        if mode not in ("short", "range"):
            raise ValueError(f"corrupt mode must be 'short' or 'range' (got {mode!r})")
        node = self.nodes[node_id]
        node.corrupt_mode, node.corrupt_left = mode, frames

    def set_limits(self, node_id: int, charge_a: float | None = None, discharge_a: float | None = None) -> None:
        """Override the currents the node's BMS allows (``None``: back to the chemistry's)."""
        node = self.nodes[node_id]
        node.charge_a_override, node.discharge_a_override = charge_a, discharge_a

    def inject_fault(self, node_id: int) -> None:
        """Latch a fault: contactors open, state Fault, until the gateway resets it."""
        node = self.nodes[node_id]
        node.fault_latched = True
        node.contactors_closed = False

    def send_error_frame(self, bus_off: bool = False) -> None:
        """Put an error frame on the bus (``bus_off``: with the SocketCAN bus-off class bit)."""
        if self._bus is not None:
            self._bus.send(can.Message(arbitration_id=0x40 if bus_off else 0x04, is_error_frame=True,
                                       data=bytes(8), is_extended_id=False))

    def flood(self, rate_hz: float, duration_s: float | None = None, arbitration_id: int | None = None,
              data: bytes | None = None) -> None:
        """Send ``rate_hz`` frames/s from a thread of its own (default: copies of the first node's status).

        Copies of a real status frame make the gateway decode every flood frame: the worst case.
        """
        self.stop_flood()
        if arbitration_id is None or data is None:
            first = int(self._ids[0])
            c = self.circuit
            template = self._encode(p.STATUS, first, SOC=float(c.soc_pct[0]), SOH=98.0,
                                    PackVoltage=float(c.pack_v[0]), PackCurrent=0.0,
                                    BmsState=p.STATE_STANDBY, ContactorsClosed=0, WatchdogTripped=0)
            arbitration_id, data = template.arbitration_id, bytes(template.data)
        message = can.Message(arbitration_id=arbitration_id, data=data, is_extended_id=arbitration_id > 0x7FF)
        self._flood_stop = threading.Event()
        self._flood_thread = threading.Thread(
            target=self._flood, args=(message, rate_hz, duration_s, self._flood_stop), daemon=True,
            name=f"vendor-c-flood-{self.channel}")
        self._flood_thread.start()

    def stop_flood(self) -> None:
        self._flood_stop.set()
        if self._flood_thread is not None:
            self._flood_thread.join(2.0)
            self._flood_thread = None

    def _flood(self, message: can.Message, rate_hz: float, duration_s: float | None,
               stop: threading.Event) -> None:
        bus = self._bus
        start = time.perf_counter()
        sent = 0
        while bus is not None and not stop.is_set():
            elapsed = time.perf_counter() - start
            if duration_s is not None and elapsed >= duration_s:
                return
            due = min(int(elapsed * rate_hz) - sent, 2000)
            for _ in range(max(0, due)):
                try:
                    bus.send(message, timeout=0.1)
                except can.CanError:
                    return
                sent += 1
                self.flood_sent += 1
            stop.wait(0.002)


def _close(notifier: can.Notifier | None, bus: can.BusABC) -> None:
    if notifier is not None:
        notifier.stop(timeout=1.0)
    bus.shutdown()


# ---------------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``bessgw sim vendor_c``."""
    parser.add_argument("--interface", default="virtual", help="python-can interface (virtual, socketcan, ...)")
    parser.add_argument("--channel", default="bessgw0", help="python-can channel (e.g. vcan0)")
    parser.add_argument("--bitrate", type=int, default=None, help="bit rate for hardware interfaces")
    parser.add_argument("--count", type=int, default=2, help="number of BMS nodes")
    parser.add_argument("--first-node-id", type=int, default=1, help="node id of the first BMS")
    parser.add_argument("--energy-kwh", type=float, default=3440.0, help="energy of each container")
    parser.add_argument("--soc-pct", type=float, default=50.0, help="initial state of charge")
    parser.add_argument("--ambient-c", type=float, default=25.0, help="ambient (and initial cell) temperature")
    parser.add_argument("--watchdog-s", type=float, default=1.0, help="BMS heartbeat watchdog")
    parser.add_argument("--chemistry", default="lfp", help="chemistry model driving the physics")


async def run(args: argparse.Namespace, context: SimulatorContext) -> None:
    """Serve until cancelled (``bessgw sim vendor_c``, or a config's ``[[simulators]]``)."""
    chemistry = context.chemistries.get(args.chemistry)
    if chemistry is None:
        known = ", ".join(sorted(context.chemistries)) or "none installed"
        raise PluginError("vendor_c", f"simulator needs chemistry {args.chemistry!r} (installed: {known})")
    simulator = VendorCSimulator(
        chemistry, interface=args.interface, channel=args.channel, bitrate=args.bitrate, count=args.count,
        first_node_id=args.first_node_id, energy_kwh=args.energy_kwh, soc_pct=args.soc_pct,
        temp_c=args.ambient_c, ambient_c=args.ambient_c, watchdog_s=args.watchdog_s, log=context.log,
    )
    await simulator.start()
    try:
        if context.log is not None:
            context.log.info("vendor_c_sim_ready", channel=args.channel, nodes=sorted(simulator.nodes))
        context.ready()
        await asyncio.Event().wait()
    finally:
        await simulator.stop()


SPEC = SimulatorSpec(
    name="vendor_c",
    add_arguments=add_arguments,
    run=run,
    description="vendor_c LFP containers: BMS nodes on a CAN bus (virtual in-process by default)",
)
