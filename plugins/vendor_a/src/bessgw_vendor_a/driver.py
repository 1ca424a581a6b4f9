"""The vendor_a driver: identity → register map → telemetry, setpoints, run/stop, fault reset, heartbeat.

The controller's identity block says which firmware generation it runs; the driver picks that
generation's map (its capability offer comes from the same block) and refuses firmware it does not know,
saying which ones it does. Telemetry quality is the driver's call where only the device's own data can
tell: an exception response or an implausible value gives BAD with the reason (logged once per change,
not per poll), and frozen values (the controller's sequence counter stops) keep their old timestamp so
core's age rule turns them stale, then bad.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field

from bessgw.plugin import (
    Capability,
    DeviceProtocolError,
    DriverContext,
    IncompatibleDeviceError,
    Quality,
    RegisterLink,
    RegisterSnapshot,
    Setpoint,
    Telemetry,
    UnitState,
    VendorDriver,
    encode_value,
)
from bessgw_vendor_a.registermap import (
    CHEMISTRIES,
    GENERATIONS,
    Register,
    RegisterMap,
    decode_bits,
    load_map,
    map_for_firmware,
)

VENDOR = "VENDOR-A"
_STATES = {0: UnitState.STANDBY, 1: UnitState.RUNNING, 2: UnitState.FAULT}
#: map register name -> Telemetry field
_TELEMETRY_FIELDS = (
    "soc_pct", "soh_pct", "p_kw", "q_kvar", "dc_v", "dc_a",
    "cell_temp_min_c", "cell_temp_max_c", "cell_v_min", "cell_v_max",
)


_NONE: frozenset[str] = frozenset()


class VendorAUnitOptions(BaseModel):
    """``units[i].options`` for a vendor_a unit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    verify_writes: bool = Field(True, description="Read setpoint and run/stop writes back and compare")


class VendorADriver(VendorDriver):
    """One vendor_a container behind a :class:`~bessgw.plugin.RegisterLink`."""

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.link: RegisterLink = context.link
        options = context.options if isinstance(context.options, VendorAUnitOptions) else VendorAUnitOptions()
        self.verify_writes = options.verify_writes
        self.map: RegisterMap | None = None
        self._heartbeat = 0
        self._last_seq: int | None = None
        self._seq_changed_at = 0.0
        self._bad_reason = ""
        self.heartbeat_refusals = 0  # consecutive exception responses to heartbeat writes

    # ------------------------------------------------------------------------------- identity

    async def identify(self) -> Capability:
        identity = load_map("identity")
        snap = await self.link.read_blocks(identity.spans())
        vendor = str(identity["vendor"].decode(snap))
        if vendor != VENDOR:
            raise IncompatibleDeviceError(f"not a vendor_a controller: identity says vendor {vendor!r}")
        major, minor = (int(identity[name].decode(snap)) for name in ("fw_major", "fw_minor"))
        firmware = f"{major}.{minor}"
        regmap = map_for_firmware(major)
        if regmap is None:
            known = ", ".join(f"{name} ({m}.x)" for m, name in sorted(GENERATIONS.items()))
            raise IncompatibleDeviceError(f"firmware {firmware} is not supported (this plugin knows {known})")
        code = int(identity["chemistry_code"].decode(snap))
        chemistry = CHEMISTRIES.get(code)
        if chemistry is None:
            raise IncompatibleDeviceError(f"unknown chemistry code {code} in the identity block")
        rated = float(identity["rated_power_kw"].decode(snap))
        try:
            offer = Capability(
                max_charge_kw=rated,
                max_discharge_kw=rated,
                energy_kwh=float(identity["rated_energy_kwh"].decode(snap)),
                chemistry=chemistry,
                max_q_kvar=float(identity["max_q_kvar"].decode(snap)),
                soc_min_pct=float(identity["soc_min_pct"].decode(snap)),
                soc_max_pct=float(identity["soc_max_pct"].decode(snap)),
                ramp_kw_per_s=float(identity["ramp_kw_per_s"].decode(snap)) or math.inf,
                protocol_version=firmware,
                firmware_version=firmware,
                vendor=vendor,
                model=str(identity["model"].decode(snap)),
                serial=str(identity["serial"].decode(snap)),
                features=frozenset({"heartbeat", "run_stop", "fault_reset", f"map_{regmap.name}"}),
            )
        except ValueError as err:
            raise IncompatibleDeviceError(f"implausible identity block: {err}") from err
        self.map = regmap
        self._decoder = regmap.decoder()
        self._ranged = [(reg.name, reg.minimum, reg.maximum, reg.unit) for reg in regmap.readable()
                        if not math.isnan(reg.minimum)]
        self._spans = regmap.spans()
        self._last_seq = None
        self._offer = offer
        if self.context.log is not None:
            self.context.log.info("vendor_a_identified", firmware=firmware, map=regmap.name,
                                  model=offer.model, serial=offer.serial)
        return offer

    def _require_map(self) -> RegisterMap:
        if self.map is None:
            raise DeviceProtocolError("vendor_a unit not identified yet")
        return self.map

    # ------------------------------------------------------------------------------ telemetry

    async def read(self) -> Telemetry:
        regmap = self._require_map()
        now = self.context.clock()
        try:
            snap = await self.link.read_blocks(self._spans)
        except DeviceProtocolError as err:  # the device answered, with an exception: its data is bad
            return self._bad(now, f"exception response: {err}")
        return self._decode(regmap, snap, now)

    def _decode(self, regmap: RegisterMap, snap: RegisterSnapshot, now: float) -> Telemetry:
        raw = self._decoder.decode(snap)
        values = {name: raw[name] for name in _TELEMETRY_FIELDS}
        problems = [
            f"{name} = {raw[name]:g} {unit} outside {low:g}..{high:g}"
            for name, low, high, unit in self._ranged
            if not low <= raw[name] <= high  # also false for NaN
        ]
        seq = int(raw["seq"])
        if seq != self._last_seq:
            self._last_seq = seq
            self._seq_changed_at = now
        state_code = int(raw["state"])
        state = _STATES.get(state_code)
        if state is None:
            problems.append(f"state code {state_code} unknown")
            state = UnitState.UNKNOWN
        alarms, warnings = int(raw["alarms"]), int(raw["warnings"])
        extra = {
            "bms_max_charge_kw": raw["max_charge_kw"],
            "bms_max_discharge_kw": raw["max_discharge_kw"],
            "seq": float(seq),
        }
        names = decode_bits("alarms", alarms) | decode_bits("warnings", warnings) if alarms or warnings else _NONE
        if problems:
            reason = "out-of-range value: " + "; ".join(problems)
            self._note_bad(reason)
            return Telemetry(unit_id=self.context.unit_id, timestamp=now, quality=Quality.BAD, state=state,
                             alarms=alarms, warnings=warnings, alarm_names=names, quality_reason=reason,
                             extra=extra, **values)
        if self._bad_reason:
            self._note_good()
        return Telemetry(unit_id=self.context.unit_id, timestamp=self._seq_changed_at, quality=Quality.GOOD,
                         state=state, alarms=alarms, warnings=warnings, alarm_names=names, extra=extra,
                         **values)

    def _bad(self, now: float, reason: str) -> Telemetry:
        self._note_bad(reason)
        return Telemetry(unit_id=self.context.unit_id, timestamp=now, quality=Quality.BAD,
                         state=UnitState.UNKNOWN, quality_reason=reason)

    def _note_bad(self, reason: str) -> None:
        if reason != self._bad_reason:
            self._bad_reason = reason
            if self.context.log is not None:
                self.context.log.warning("vendor_a_bad_data", reason=reason)

    def _note_good(self) -> None:
        if self._bad_reason:
            self._bad_reason = ""
            if self.context.log is not None:
                self.context.log.info("vendor_a_data_good_again")

    # -------------------------------------------------------------------------------- control

    def _encode(self, reg: Register, value: float) -> list[int]:
        try:
            return encode_value(value, reg.kind, reg.word_order, reg.scale)
        except ValueError as err:
            raise DeviceProtocolError(f"cannot write {reg.name}: {err}") from err

    async def write_setpoint(self, setpoint: Setpoint) -> None:
        regmap = self._require_map()
        p_reg, q_reg = regmap["p_setpoint_kw"], regmap["q_setpoint_kvar"]
        words = self._encode(p_reg, setpoint.p_kw)
        if q_reg.address == p_reg.address + p_reg.width:  # adjacent: one request (and one read-back)
            await self.link.write_registers(p_reg.address, words + self._encode(q_reg, setpoint.q_kvar),
                                            verify=self.verify_writes)
        else:
            await self.link.write_registers(p_reg.address, words, verify=self.verify_writes)
            await self.link.write_registers(q_reg.address, self._encode(q_reg, setpoint.q_kvar),
                                            verify=self.verify_writes)

    async def heartbeat(self) -> None:
        """Bump the heartbeat register. An exception response is logged, not raised: the link works, the
        poll already reports the device's trouble as BAD data, and ending the session would hide it."""
        regmap = self._require_map()
        self._heartbeat = (self._heartbeat + 1) & 0xFFFF
        try:
            await self.link.write_registers(regmap["heartbeat"].address, [self._heartbeat], verify=False)
        except DeviceProtocolError as err:
            self.heartbeat_refusals += 1
            if self.heartbeat_refusals == 1 and self.context.log is not None:
                self.context.log.warning("vendor_a_heartbeat_refused", reason=str(err))
            return
        self.heartbeat_refusals = 0

    async def set_running(self, running: bool) -> None:
        regmap = self._require_map()
        value = 1 if running else 0
        await self.link.write_registers(regmap["run"].address, [value], verify=self.verify_writes)

    async def reset_fault(self) -> None:
        regmap = self._require_map()
        # the controller clears the register itself once the reset is done, so there is nothing to verify
        await self.link.write_registers(regmap["fault_reset"].address, [1], verify=False)


def make_driver(context: DriverContext) -> VendorADriver:
    return VendorADriver(context)
