"""The vendor_c driver: push telemetry from cyclic BMS frames, commands and heartbeat out.

Nothing is polled. Frame handlers (run by core's bus reader) decode each frame and keep its values and
timestamp; :meth:`VendorCDriver.read` builds :class:`Telemetry` from the latest values, stamped with the
time of the oldest frame it uses, so core's age rule turns the unit stale, then bad, when the node stops
talking. The BMS's live current limits become a new capability offer (current x pack voltage, bounded by
the nameplate) as soon as a limits frame changes them; core renegotiates on its next poll.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bessgw.plugin import (
    CanFrame,
    Capability,
    DeviceProtocolError,
    DeviceTimeoutError,
    DeviceUnavailableError,
    DriverContext,
    IncompatibleDeviceError,
    Quality,
    Setpoint,
    Telemetry,
    UnitState,
    VendorDriver,
)
from bessgw_vendor_c import protocol as p

_STATES = {
    p.STATE_INIT: UnitState.UNKNOWN,
    p.STATE_STANDBY: UnitState.STANDBY,
    p.STATE_RUNNING: UnitState.RUNNING,
    p.STATE_FAULT: UnitState.FAULT,
}
#: what identify() waits for: nameplate, identity and one of each cyclic frame
_REQUIRED = (p.STATUS, p.CELLS, p.LIMITS, p.CAPACITY, p.IDENTITY)
#: identify() gives up this soon when the node sends nothing at all (5 status periods)
_SILENT_S = 0.5


class UnitOptions(BaseModel):
    """``units[i].options`` of a vendor_c unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rated_power_kw: float = Field(1000.0, gt=0, description="PCS nameplate; bounds the BMS-derived offer")
    rated_q_kvar: float = Field(0.0, ge=0, description="Reactive power capability of the PCS")
    chemistry: str = Field("lfp", description="Cell chemistry of the container (vendor_c ships LFP)")
    offer_step_kw: float = Field(1.0, gt=0, description="Offers are rounded down to this step")
    identify_timeout_s: float = Field(3.0, gt=0, le=60, description="Wait for identity + cyclic frames")
    heartbeat_lease_s: float = Field(
        3.0, gt=0, le=60, description="Core keeps the CAN heartbeat going this long after each renewal"
    )
    temp_min_c: float = Field(-20.0, description="Cell temperature window of the container")
    temp_max_c: float = Field(55.0)


class VendorCDriver(VendorDriver):
    """One vendor_c BMS node."""

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.options: UnitOptions = context.options or UnitOptions()
        self.link = context.link
        self.node_id: int = self.link.node_id
        self.values: dict[str, dict[str, float]] = {}
        self.stamps: dict[str, float] = {}
        self.frames: dict[str, int] = {name: 0 for name in p.BMS_MESSAGES}
        self.malformed = 0
        self.last_malformed = ""
        self._telemetry: Telemetry | None = None
        self._handlers: dict[int, str] = {p.frame_id(name, self.node_id): name for name in p.BMS_MESSAGES}
        self._identified = asyncio.Event()
        self._heard = asyncio.Event()  # any valid frame from the node since identify() started
        self._setpoint_counter = 0
        self._control_counter = 0
        self._heartbeat_ids = p.frame_id(p.HEARTBEAT, self.node_id)
        # cyclic telemetry latest-wins (a saturated bus costs one decode per id per batch); alarms every frame
        self.link.subscribe([p.frame_id(n, self.node_id) for n in p.TELEMETRY_MESSAGES], self._on_frame,
                            latest_only=True)
        self.link.subscribe([p.frame_id(n, self.node_id) for n in p.EVENT_MESSAGES], self._on_frame)

    # -------------------------------------------------------------------------- frames (hot path)

    def _on_frame(self, frame: CanFrame) -> None:
        name = self._handlers[frame.arbitration_id]
        try:
            values = p.decode(name, frame.data)
        except DeviceProtocolError as err:
            self.malformed += 1
            self.last_malformed = str(err)
            if self.malformed <= 3 or self.malformed % 1000 == 0:
                self._log("warning", "vendor_c_malformed_frame", error=str(err), malformed=self.malformed)
            return
        self.values[name] = values
        self.stamps[name] = frame.timestamp
        self.frames[name] += 1
        self._telemetry = None
        self._heard.set()
        if name == p.LIMITS or (name == p.STATUS and self._offer is not None):
            self._update_offer()
        if not self._identified.is_set() and all(n in self.values for n in _REQUIRED):
            self._identified.set()

    # ------------------------------------------------------------------------------ identity

    async def identify(self) -> Capability:
        # the lease covers identification too: core's heartbeat renewals only start once we return
        self.link.arm_heartbeat(self._heartbeat_frame,
                                self.options.identify_timeout_s + self.options.heartbeat_lease_s)
        for name in _REQUIRED:  # a re-identification must see the node speak again
            self.values.pop(name, None)
        self._identified.clear()
        self._heard.clear()
        try:  # a silent node fails fast, so core ages its data meanwhile instead of waiting on us
            await asyncio.wait_for(self._heard.wait(), min(_SILENT_S, self.options.identify_timeout_s))
        except asyncio.TimeoutError as err:
            raise DeviceUnavailableError(f"vendor_c node {self.node_id}: silent on the bus") from err
        try:
            await asyncio.wait_for(self._identified.wait(), self.options.identify_timeout_s)
        except asyncio.TimeoutError as err:
            missing = [n for n in _REQUIRED if n not in self.values]
            raise DeviceTimeoutError(
                f"vendor_c node {self.node_id}: no {', '.join(missing)} frame within"
                f" {self.options.identify_timeout_s:g} s"
            ) from err
        identity = self.values[p.IDENTITY]
        if int(identity["ProtocolVersion"]) != p.PROTOCOL_MAJOR:
            raise IncompatibleDeviceError(
                f"vendor_c node {self.node_id} speaks protocol {int(identity['ProtocolVersion'])},"
                f" this driver speaks {p.PROTOCOL_MAJOR}"
            )
        offer = self._build_offer()
        self._offer = offer
        return offer

    def _build_offer(self) -> Capability:
        identity, capacity = self.values[p.IDENTITY], self.values[p.CAPACITY]
        limits, status = self.values[p.LIMITS], self.values[p.STATUS]
        pack_v = status["PackVoltage"]
        firmware = f"{int(identity['FirmwareMajor'])}.{int(identity['FirmwareMinor'])}.{int(identity['FirmwarePatch'])}"
        return Capability(
            max_charge_kw=self._kw(limits["MaxChargeCurrent"], pack_v),
            max_discharge_kw=self._kw(limits["MaxDischargeCurrent"], pack_v),
            energy_kwh=capacity["RatedEnergy"],
            chemistry=self.options.chemistry,
            max_q_kvar=self.options.rated_q_kvar,
            voltage_min_v=min(limits["MinDischargeVoltage"], limits["MaxChargeVoltage"]),
            voltage_max_v=limits["MaxChargeVoltage"],
            temp_min_c=self.options.temp_min_c,
            temp_max_c=self.options.temp_max_c,
            protocol_version=str(int(identity["ProtocolVersion"])),
            firmware_version=firmware,
            vendor="vendor_c",
            model=f"{capacity['RatedEnergy']:g} kWh LFP container",
            serial=str(int(identity["SerialNumber"])),
            features=frozenset({"live_limits", "contactor_control", "fault_reset"}),
        )

    def _kw(self, current_a: float, pack_v: float) -> float:
        """Power the BMS allows at ``current_a``, rounded down to the offer step, bounded by the nameplate."""
        step = self.options.offer_step_kw
        return min(self.options.rated_power_kw, math.floor(current_a * pack_v / 1000.0 / step) * step)

    def _update_offer(self) -> None:
        """Rebuild the offer when the limits or the pack voltage move the kW figures (cheap check first)."""
        if not all(n in self.values for n in _REQUIRED):
            return
        current = self._offer
        if current is not None:
            limits, pack_v = self.values[p.LIMITS], self.values[p.STATUS]["PackVoltage"]
            if (self._kw(limits["MaxChargeCurrent"], pack_v) == current.max_charge_kw
                    and self._kw(limits["MaxDischargeCurrent"], pack_v) == current.max_discharge_kw
                    and limits["MaxChargeVoltage"] == current.voltage_max_v):
                return
        offer = self._build_offer()
        if offer != self._offer:
            self._offer = offer

    # ------------------------------------------------------------------------------ telemetry

    async def read(self) -> Telemetry:
        if p.STATUS not in self.values:
            raise DeviceUnavailableError(f"vendor_c node {self.node_id}: no status frame yet")
        timeout_s = self.link.frame_timeout_s
        if timeout_s is not None:
            age = self.context.clock() - self.stamps[p.STATUS]
            if age > timeout_s:
                raise DeviceTimeoutError(f"vendor_c node {self.node_id}: silent for {age:.1f} s")
        if self._telemetry is None:
            self._telemetry = self._build_telemetry()
        return self._telemetry

    def _build_telemetry(self) -> Telemetry:
        status = self.values[p.STATUS]
        cells = self.values.get(p.CELLS, {})
        limits = self.values.get(p.LIMITS, {})
        alarms = self.values.get(p.ALARMS, {})
        stamps = [self.stamps[n] for n in (p.STATUS, p.CELLS) if n in self.stamps]
        bits = 0
        for index, name in enumerate(p.ALARM_NAMES):
            if alarms.get(name):
                bits |= 1 << index
        pack_v, pack_a = float(status["PackVoltage"]), float(status["PackCurrent"])
        nan = math.nan
        return Telemetry(
            unit_id=self.context.unit_id,
            timestamp=min(stamps),
            quality=Quality.GOOD,
            state=_STATES.get(int(status["BmsState"]), UnitState.UNKNOWN),
            soc_pct=float(status["SOC"]),
            soh_pct=float(status["SOH"]),
            p_kw=pack_v * pack_a / 1000.0,
            dc_v=pack_v,
            dc_a=pack_a,
            cell_temp_min_c=float(cells.get("CellTempMin", nan)),
            cell_temp_max_c=float(cells.get("CellTempMax", nan)),
            cell_v_min=float(cells.get("CellVoltageMin", nan)),
            cell_v_max=float(cells.get("CellVoltageMax", nan)),
            alarms=bits,
            warnings=int(alarms.get("Warnings", 0)),
            alarm_names=frozenset(name for i, name in enumerate(p.ALARM_NAMES) if bits >> i & 1),
            extra={
                "max_charge_a": limits.get("MaxChargeCurrent", nan),
                "max_discharge_a": limits.get("MaxDischargeCurrent", nan),
                "contactors_closed": float(status["ContactorsClosed"]),
                "watchdog_tripped": float(status["WatchdogTripped"]),
            },
        )

    # ------------------------------------------------------------------------------ commands

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        self._setpoint_counter = (self._setpoint_counter + 1) & 0xFF
        await self.link.send(p.encode(p.SETPOINT, self.node_id, PowerSetpoint=round(setpoint.p_kw, 1),
                                      ReactiveSetpoint=round(setpoint.q_kvar, 1),
                                      SetpointCounter=self._setpoint_counter))

    async def set_running(self, running: bool) -> None:
        await self._control(ContactorRequest=p.CONTACTOR_CLOSE if running else p.CONTACTOR_OPEN)

    async def reset_fault(self) -> None:
        await self._control(FaultReset=1)

    async def _control(self, **signals: int) -> None:
        self._control_counter = (self._control_counter + 1) & 0xFF
        await self.link.send(p.encode(p.CONTROL, self.node_id, ControlCounter=self._control_counter, **signals))

    async def heartbeat(self) -> None:
        """Renew the heartbeat lease; core sends the frames on the bus's own period."""
        if not self.link.available:
            raise DeviceUnavailableError(f"vendor_c node {self.node_id}: CAN bus is down")
        self.link.arm_heartbeat(self._heartbeat_frame, self.options.heartbeat_lease_s)

    def _heartbeat_frame(self, counter: int) -> CanFrame:
        return p.encode(p.HEARTBEAT, self.node_id, HeartbeatCounter=counter & 0xFF, GatewayState=1)

    async def close(self) -> None:
        self.link.disarm_heartbeat()
        self.link.unsubscribe()

    def _log(self, level: str, event: str, **fields: Any) -> None:
        if self.context.log is not None:
            getattr(self.context.log, level)(event, node_id=self.node_id, **fields)
