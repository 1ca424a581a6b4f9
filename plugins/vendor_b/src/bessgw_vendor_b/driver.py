"""The vendor_b driver: a VRFB container controller that is an OPC UA server.

Telemetry is pushed, not polled: :meth:`identify` reads the identity block once and subscribes to the
telemetry folder; :meth:`read` returns the latest pushed values. Its timestamp is the *source* timestamp
of the controller's cycle counter (``Telemetry/Sequence``), which advances every controller cycle: when
the controller stops publishing, the timestamp stops and core's age rule makes the data stale, then bad.
Flow-battery specifics (electrolyte temperature, pump state) travel in ``Telemetry.extra`` and the offer's
features; the VRFB chemistry has no cold-charge derating, so none is invented here.
"""

from __future__ import annotations

import asyncio
import math

from pydantic import BaseModel, ConfigDict, Field

from bessgw.plugin import (
    Capability,
    DataChange,
    DeviceTimeoutError,
    DeviceUnavailableError,
    DriverContext,
    IncompatibleDeviceError,
    OpcUaLink,
    Quality,
    Setpoint,
    Telemetry,
    UnitState,
    VendorDriver,
)
from bessgw_vendor_b.addressspace import IDENTITY, STATE_FAULT, STATE_RUNNING, STATE_STANDBY, TELEMETRY, path

VENDOR = "VENDOR-B"
SUPPORTED_PROTOCOLS = ("2",)
FEATURES = frozenset({"flow_battery", "electrolyte_temperature", "pump_state", "set_running", "reset_fault",
                      "subscription_telemetry"})
_STATES = {STATE_STANDBY: UnitState.STANDBY, STATE_RUNNING: UnitState.RUNNING, STATE_FAULT: UnitState.FAULT}
_TELEMETRY_PATHS = tuple(path("Telemetry", name) for name in TELEMETRY)
_SEQUENCE = path("Telemetry", "Sequence")


class VendorBUnitOptions(BaseModel):
    """``units[i].options`` for a vendor_b unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first_data_timeout_s: float = Field(
        5.0, gt=0, le=60, description="Wait this long after identify for the subscription's first values"
    )


class VendorBDriver(VendorDriver):
    """One vendor_b VRFB container behind an :class:`~bessgw.plugin.OpcUaLink`."""

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.link: OpcUaLink = context.link
        options = context.options if isinstance(context.options, VendorBUnitOptions) else VendorBUnitOptions()
        self.options = options
        self.latest: dict[str, DataChange] = {}
        self.changes = 0
        self._first = asyncio.Event()
        self._heartbeat = 0
        self._closed = False

    # ------------------------------------------------------------------------------- identity

    async def identify(self) -> Capability:
        names = list(IDENTITY)
        values = {change.path.split("/")[-1]: change.value
                  for change in await self.link.read([path("Identity", name) for name in names])}
        if values["Vendor"] != VENDOR:
            raise IncompatibleDeviceError(f"not a vendor_b controller (vendor {values['Vendor']!r})")
        if str(values["ProtocolVersion"]) not in SUPPORTED_PROTOCOLS:
            raise IncompatibleDeviceError(
                f"protocol version {values['ProtocolVersion']} is not supported (supported: "
                f"{', '.join(SUPPORTED_PROTOCOLS)})")
        self._offer = Capability(
            max_charge_kw=float(values["RatedChargeKw"]),
            max_discharge_kw=float(values["RatedDischargeKw"]),
            energy_kwh=float(values["RatedEnergyKwh"]),
            chemistry="vrfb",
            max_q_kvar=float(values["MaxReactiveKvar"]),
            soc_min_pct=float(values["SocMinPct"]),
            soc_max_pct=float(values["SocMaxPct"]),
            voltage_min_v=float(values["StackVoltageMinV"]),
            voltage_max_v=float(values["StackVoltageMaxV"]),
            temp_min_c=float(values["ElectrolyteTempMinC"]),
            temp_max_c=float(values["ElectrolyteTempMaxC"]),
            ramp_kw_per_s=float(values["RampKwPerS"]) or math.inf,
            protocol_version=str(values["ProtocolVersion"]),
            firmware_version=str(values["FirmwareVersion"]),
            vendor=VENDOR,
            model=str(values["Model"]),
            serial=str(values["SerialNumber"]),
            features=FEATURES,
        )
        self.link.subscribe(_TELEMETRY_PATHS, self._on_change)
        return self._offer

    def _on_change(self, change: DataChange) -> None:
        self.latest[change.path] = change
        self.changes += 1
        if change.path == _SEQUENCE:
            self._first.set()

    # ------------------------------------------------------------------------------ telemetry

    async def read(self) -> Telemetry:
        if not self._first.is_set():
            try:
                await asyncio.wait_for(self._first.wait(), self.options.first_data_timeout_s)
            except asyncio.TimeoutError:
                raise DeviceTimeoutError(
                    f"{self.context.unit_id}: no telemetry from the subscription within "
                    f"{self.options.first_data_timeout_s} s") from None
        if not self.link.available:  # the values below would be from a session that is gone
            raise DeviceUnavailableError(
                f"{self.context.unit_id}: no live subscription: {self.link.unavailable_reason}")
        latest = self.latest
        value = {name: latest[path("Telemetry", name)].value
                 for name in TELEMETRY if path("Telemetry", name) in latest}
        timestamp = latest[_SEQUENCE].source_timestamp
        bad = sorted(change.path for change in latest.values() if not change.good)
        electrolyte_c = float(value.get("ElectrolyteTempC", math.nan))
        pump = bool(value.get("PumpRunning", False))
        state = _STATES.get(int(value.get("State", -1)), UnitState.UNKNOWN)
        alarm = int(value.get("AlarmCode", 0))
        return Telemetry(
            unit_id=self.context.unit_id,
            timestamp=timestamp,
            quality=Quality.BAD if bad else Quality.GOOD,
            quality_reason=f"bad status from the controller: {', '.join(bad)}" if bad else "",
            state=state,
            soc_pct=float(value.get("SocPct", math.nan)),
            p_kw=float(value.get("PowerKw", math.nan)),
            q_kvar=float(value.get("ReactivePowerKvar", math.nan)),
            dc_v=float(value.get("StackVoltageV", math.nan)),
            dc_a=float(value.get("StackCurrentA", math.nan)),
            cell_temp_min_c=electrolyte_c,
            cell_temp_max_c=electrolyte_c,
            cell_v_min=float(value.get("CellVoltageMinV", math.nan)),
            cell_v_max=float(value.get("CellVoltageMaxV", math.nan)),
            alarms=alarm,
            alarm_names=frozenset({f"controller_alarm_{alarm}"}) if alarm else frozenset(),
            extra={"electrolyte_temp_c": electrolyte_c, "pump_running": 1.0 if pump else 0.0,
                   "sequence": float(value.get("Sequence", 0))},
        )

    # -------------------------------------------------------------------------------- control

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        await self.link.call("Control/SetPower", float(setpoint.p_kw), float(setpoint.q_kvar))

    async def heartbeat(self) -> None:
        self._heartbeat = (self._heartbeat + 1) & 0xFFFFFFFF
        await self.link.write("Control/HeartbeatCounter", self._heartbeat, "uint32")

    async def set_running(self, running: bool) -> None:
        await self.link.call("Control/Start" if running else "Control/Stop")

    async def reset_fault(self) -> None:
        await self.link.call("Control/ResetFault")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.link.unsubscribe()


def make_driver(context: DriverContext) -> VendorBDriver:
    return VendorBDriver(context)
