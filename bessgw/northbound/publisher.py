"""Pushes unit data into the address space: cheaply, only what changed, at its own rate.

Northbound cost must not starve the poll loops (200 units × ~20 variables). So:

* a value goes straight into the variable's Value attribute of asyncua's address space: the attribute
  object is looked up once per variable, the DataValue is built without asyncua's per-call type guessing
  (we know each variable's type), and the subscriptions' data-change callbacks are called exactly as
  ``write_attribute_value`` calls them. That path's own checks (node exists, type matches, Bad means a
  null value) hold by construction here;
* a unit whose telemetry, limits and capability objects are the same as last cycle costs one identity
  comparison; otherwise only values that moved beyond their absolute deadband, or whose status changed,
  are written — the number of notifications a subscribe-to-everything client causes is bounded by
  ``units × variables / sampling_interval_s`` and in practice far below it. The ~14 values of each new
  telemetry are checked in one loop over the unit's variables in a fixed order (no call, no name lookup
  per value), so an unchanged value costs two comparisons; everything else goes through :meth:`_put`
  (the same rules, one value at a time). All told, a changed value, its share of the unchanged ones
  checked beside it included, costs about what a bare ``write_attribute_value`` of a prebuilt DataValue
  called at the same pace costs, or less (``bench/opcua_north.py`` prints the ratio,
  ``bench/opcua_publish.py`` the inner loop alone);
* the sampling interval is configured separately from the poll interval, and the loop yields to the
  event loop between slices of units, so a command or a poll waits at most one slice.

Quality is never hidden: Good data is Good, stale data Uncertain (``UncertainLastUsableValue``), bad data
Bad, always with the source timestamp of the measurement, never the time of publishing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import operator
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import Server, ua

from bessgw import __version__
from bessgw.model import Capability, EffectiveLimits, Quality, Telemetry
from bessgw.northbound.information_model import (
    CAMPUS_VARIABLES,
    CAPABILITY_PROPERTIES,
    GATEWAY_VARIABLES,
    PEER_GATEWAY_VARIABLES,
    PEER_UNIT_VARIABLES,
    UNIT_VARIABLES,
    Instance,
)
from bessgw.unit import UnitSnapshot, UnitSupervisor

_UTC = dt.timezone.utc
#: told (unit id, unit node, alarms raised, alarms cleared, measurement time) when a unit's alarm set changes
AlarmListener = Callable[[str, ua.NodeId, set[str], set[str], dt.datetime], Awaitable[None]]
#: the longest part of a sampling interval published at once (see :meth:`Publisher.run`)
_PART_S = 0.1
#: yield to the event loop once the units written since the last yield took this long (s), so a poll or
#: a command waits at most about one slice behind the publisher, however costly the subscribers make a unit
_SLICE_S = 0.002

_GOOD = ua.StatusCode(ua.StatusCodes.Good)
_GOOD_CODE = _GOOD.value
_DOUBLE = ua.VariantType.Double
_UNCERTAIN = ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue)
_BAD_NO_COMMUNICATION = ua.StatusCode(ua.StatusCodes.BadNoCommunication)
_BAD_DEVICE = ua.StatusCode(ua.StatusCodes.BadDeviceFailure)
_NO_VALUE = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
_NO_VALUE_CODE = _NO_VALUE.value
_NOT_NEGOTIATED = ua.StatusCode(ua.StatusCodes.BadInvalidState)

_TELEMETRY_FIELDS = {
    "SocPct": "soc_pct", "SohPct": "soh_pct", "PowerKw": "p_kw", "ReactivePowerKvar": "q_kvar",
    "DcVoltageV": "dc_v", "DcCurrentA": "dc_a", "CellTempMinC": "cell_temp_min_c",
    "CellTempMaxC": "cell_temp_max_c", "CellVoltageMinV": "cell_v_min", "CellVoltageMaxV": "cell_v_max",
}
#: the unit variables written from one telemetry with its status and source time, checked in one loop
_TELEMETRY_NAMES = (*_TELEMETRY_FIELDS, "State", "AlarmActive", "Alarms", "Warnings")
#: the numeric telemetry fields of :data:`_TELEMETRY_FIELDS` in one C call (a getattr each costs more)
_telemetry_numbers = operator.attrgetter(*_TELEMETRY_FIELDS.values())
_LIMIT_FIELDS = {"MaxChargeKw": "max_charge_kw", "MaxDischargeKw": "max_discharge_kw",
                 "MaxReactiveKvar": "max_q_kvar"}
#: a StatusCode's severity bits: 0b10 Bad, 0b01 Uncertain, 0b00 Good (OPC UA Part 4, 7.39)
_SEVERITY_MASK = 0xC0000000
_BAD_MASK = 0x80000000
_VARIANTS = {v.name: v.variant for v in (*UNIT_VARIABLES, *CAPABILITY_PROPERTIES, *GATEWAY_VARIABLES,
                                         *CAMPUS_VARIABLES, *PEER_GATEWAY_VARIABLES, *PEER_UNIT_VARIABLES)}
#: names a deadband may be configured for (numeric values)
DEADBAND_NAMES = frozenset(
    name for name, variant in _VARIANTS.items() if variant is ua.VariantType.Double
)


#: the qualities as module constants: ``Quality.GOOD`` goes through the Enum metaclass (~50 ns a lookup)
_Q_GOOD, _Q_STALE = Quality.GOOD, Quality.STALE


def quality_status(quality: Quality, connected: bool) -> ua.StatusCode:
    if quality is _Q_GOOD:
        return _GOOD
    if quality is _Q_STALE:
        return _UNCERTAIN
    return _BAD_DEVICE if connected else _BAD_NO_COMMUNICATION


class _Shown:
    """One variable: its Value attribute in asyncua's address space, and the value and status it shows.

    ``attribute`` is asyncua's ``AttributeValue`` of the node (``None`` when the node is gone), kept so
    a write is an assignment, not a lookup; slots because there is one per variable of every unit.
    """

    __slots__ = ("attribute", "code", "value")

    def __init__(self, attribute: Any) -> None:
        self.attribute = attribute
        self.value: Any = None
        self.code = -1  # no status shown yet: the first value is always written


class _Sample(ua.DataValue):
    """A DataValue the publisher never changes once stored, so a copy of it may be itself.

    asyncua deep-copies every value it hands a monitored item (``copy.deepcopy``: ~40 µs, most of what a
    subscriber costs per value, and a second copy of every watched value in memory), in case the writer
    changes it afterwards. The publisher builds a new DataValue for every write and never touches it
    again. Encoded exactly like a DataValue (same class for the binary codec and for clients).
    """

    __slots__ = ()

    def __copy__(self) -> _Sample:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Sample:
        return self


_new = object.__new__
_NULL = ua.VariantType.Null
_Variant = ua.Variant


@dataclass
class Published:
    """What one unit's nodes show now, to compare the next sample against."""

    instance: Instance
    values: dict[str, _Shown] = field(default_factory=dict)
    snapshot: UnitSnapshot | None = None
    telemetry: Telemetry | None = None
    limits: EffectiveLimits | None = None
    capability: Capability | None = None
    connected: bool | None = None
    refused_reason: str | None = None
    alarm_names: frozenset[str] = frozenset()
    #: the :class:`_Shown` of :data:`_TELEMETRY_NAMES`, in that order (the same objects as in ``values``)
    rows: tuple[_Shown, ...] = ()


class Publisher:
    """Samples every unit each ``interval_s`` and writes the changes into the address space."""

    def __init__(self, server: Server, interval_s: float, deadbands: dict[str, float],
                 default_deadband: float, on_alarms: AlarmListener | None = None) -> None:
        self.server = server
        self.interval_s = interval_s
        self.deadbands = dict(deadbands)
        self.default_deadband = default_deadband
        #: the deadband of each of :data:`_TELEMETRY_NAMES` (applied to float values only, as in :meth:`_moved`)
        self._telemetry_deadbands = tuple(self.deadbands.get(name, default_deadband) for name in _TELEMETRY_NAMES)
        self._server_time = dt.datetime.now(_UTC)
        self.on_alarms = on_alarms
        self.units: dict[str, tuple[UnitSupervisor, Published]] = {}
        self.gateway: Published | None = None
        self.gateway_id = ""
        self.values_written = 0
        self.notify_failures = 0  #: data-change callbacks that raised (the value was stored all the same)
        self._aspace = server.iserver.aspace
        #: (attribute, DataValue) written since the last :meth:`_notify`, for the subscriptions' callbacks
        self._changed: list[tuple[Any, ua.DataValue]] = []
        self.cycles = 0
        self.last_cycle_s = 0.0

    def set_gateway(self, instance: Instance, gateway_id: str) -> None:
        self.gateway = Published(instance)
        self.gateway_id = gateway_id

    def add(self, supervisor: UnitSupervisor, instance: Instance) -> None:
        self.units[supervisor.unit_id] = (supervisor, Published(instance))

    def forget(self, unit_id: str) -> Published | None:
        entry = self.units.pop(unit_id, None)
        return entry[1] if entry else None

    async def run(self) -> None:
        """Publish every interval until cancelled (missed slots are skipped, not bunched up).

        An interval longer than :data:`_PART_S` is published in parts, each a share of the units, spread
        evenly over it: every unit is still sampled once per interval, but a subscriber's notifications
        leave in several small publish responses instead of one burst of every value (asyncua encodes a
        response in one go: ~10 ms per 3,000 values, during which a command or a poll waits).
        """
        loop = asyncio.get_running_loop()
        parts = max(1, round(self.interval_s / _PART_S))
        step_s = self.interval_s / parts
        next_at = loop.time()
        part = 0
        while True:
            await self.publish_once(part, parts)
            part = (part + 1) % parts
            next_at += step_s
            now = loop.time()
            if next_at < now:
                next_at = now + step_s - ((now - next_at) % step_s)
            await asyncio.sleep(next_at - now)

    async def publish_once(self, part: int = 0, parts: int = 1) -> None:
        """Publish every ``parts``-th unit starting at ``part`` (all by default), and the gateway with part 0."""
        started = time.perf_counter()
        now = self._server_time = dt.datetime.now(_UTC)  # one timestamp per cycle: cheaper than per value
        slice_started = started
        for supervisor, published in list(self.units.values())[part::parts]:
            if await self._publish_unit(supervisor, published, now) \
                    and time.perf_counter() - slice_started >= _SLICE_S:
                await asyncio.sleep(0)
                slice_started = time.perf_counter()
        if part == 0:
            if self.gateway is not None:
                await self._publish_gateway(self.gateway, now)
            self.cycles += 1  # intervals begun
        self.last_cycle_s = time.perf_counter() - started  # of this part

    # ---------------------------------------------------------------------------------- units

    async def _publish_unit(self, supervisor: UnitSupervisor, published: Published, now: dt.datetime) -> bool:
        snap = supervisor.snapshot()
        if snap is published.snapshot:  # the supervisor hands out a new snapshot only when something changed
            return False
        published.snapshot = snap
        telemetry, limits, capability = snap.telemetry, snap.limits, snap.capability
        connected, refused = snap.connected, snap.refused_reason
        if (telemetry is published.telemetry and limits is published.limits and capability is published.capability
                and connected == published.connected and refused == published.refused_reason):
            return False
        wrote = 0
        if telemetry is not published.telemetry or connected != published.connected:
            wrote += self._write_telemetry(published, telemetry, connected, now)
        if limits is not published.limits:
            wrote += self._write_limits(published, limits, now)
        if capability is not published.capability and capability is not None:
            wrote += await self._write_capability(published, capability, now)
        if connected != published.connected:
            wrote += self._put(published, "Connected", connected, _GOOD, now)
        if refused != published.refused_reason:
            wrote += self._put(published, "RefusedReason", refused, _GOOD, now)
        published.telemetry, published.limits, published.capability = telemetry, limits, capability
        published.connected, published.refused_reason = connected, refused
        if self._changed:
            await self._notify()
        if telemetry.alarm_names != published.alarm_names:
            before, after = published.alarm_names, telemetry.alarm_names
            published.alarm_names = after
            if self.on_alarms is not None:
                await self.on_alarms(telemetry.unit_id, published.instance.node.nodeid, set(after - before),
                                     set(before - after), dt.datetime.fromtimestamp(telemetry.timestamp, _UTC))
        return wrote > 0

    def _write_telemetry(self, published: Published, telemetry: Telemetry, connected: bool,
                         now: dt.datetime) -> int:
        """Write what moved of one telemetry; the unchanged values cost two comparisons each.

        The same rules as :meth:`_put` (deadbands on floats, a Good NaN shown as "no value yet", a status
        change always written), inlined for the ~14 values every poll brings: a call per value was most of
        the publisher's cost per unit.
        """
        status = quality_status(telemetry.quality, connected)
        code = status.value
        source = dt.datetime.fromtimestamp(telemetry.timestamp, _UTC)
        rows = published.rows or self._rows(published)
        alarms = telemetry.alarms
        values = (*_telemetry_numbers(telemetry), telemetry.state._value_, alarms != 0, alarms, telemetry.warnings)
        store = self._store
        wrote = 0
        for shown, value, deadband, name in zip(rows, values, self._telemetry_deadbands, _TELEMETRY_NAMES, strict=True):
            if value == value:
                if shown.code == code:
                    old = shown.value
                    if value == old or (isinstance(value, float) and isinstance(old, float)
                                        and abs(value - old) <= deadband):
                        continue
                wrote += store(published, name, shown, value, status, source)
            elif code & _SEVERITY_MASK:  # NaN with Uncertain or Bad: shown as such
                if shown.code != code or shown.value == shown.value:
                    wrote += store(published, name, shown, value, status, source)
            elif shown.code != _NO_VALUE_CODE or shown.value == shown.value:  # Good NaN: nothing measured
                wrote += store(published, name, shown, value, _NO_VALUE, source)
        names = telemetry.alarm_names
        shown = published.values.get("AlarmNames")
        if shown is None or names != published.alarm_names:
            wrote += self._put(published, "AlarmNames", sorted(names), status, source)
        elif shown.code != code:  # same names: only a status change is news (sorting the set is not free)
            wrote += store(published, "AlarmNames", shown, shown.value, status, source)
        reason = telemetry.quality_reason
        shown = published.values.get("QualityReason") or self._shown(published, "QualityReason")
        if shown.code != _GOOD_CODE or reason != shown.value:  # why the quality is what it is: always Good
            wrote += store(published, "QualityReason", shown, reason, _GOOD, now)
        return wrote

    def _rows(self, published: Published) -> tuple[_Shown, ...]:
        published.rows = tuple(self._shown(published, name) for name in _TELEMETRY_NAMES)
        return published.rows

    def _write_limits(self, published: Published, limits: EffectiveLimits | None, now: dt.datetime) -> int:
        wrote = 0
        for name, attribute in _LIMIT_FIELDS.items():
            value = getattr(limits, attribute) if limits is not None else math.nan
            wrote += self._put(published, name, value, _GOOD if limits is not None else _NOT_NEGOTIATED, now)
        return wrote

    async def _write_capability(self, published: Published, capability: Capability, now: dt.datetime) -> int:
        values = {
            "Vendor": capability.vendor, "Model": capability.model, "SerialNumber": capability.serial,
            "FirmwareVersion": capability.firmware_version, "ProtocolVersion": capability.protocol_version,
            "Chemistry": capability.chemistry, "EnergyKwh": capability.energy_kwh,
            "NameplateChargeKw": capability.max_charge_kw, "NameplateDischargeKw": capability.max_discharge_kw,
            "NameplateReactiveKvar": capability.max_q_kvar, "SocMinPct": capability.soc_min_pct,
            "SocMaxPct": capability.soc_max_pct,
        }
        wrote = 0
        for name, value in values.items():
            wrote += self._put(published, name, value, _GOOD, now)
        # the ranges an operator's trend should use are the unit's own nameplate, not a generic default
        p_range = ua.Range(-capability.max_charge_kw, capability.max_discharge_kw)
        q_range = ua.Range(-capability.max_q_kvar, capability.max_q_kvar)
        ranges = {"PowerKw": p_range, "PowerSetpointKw": p_range, "ReactivePowerKvar": q_range,
                  "ReactivePowerSetpointKvar": q_range,
                  "MaxChargeKw": ua.Range(0.0, capability.max_charge_kw),
                  "MaxDischargeKw": ua.Range(0.0, capability.max_discharge_kw),
                  "MaxReactiveKvar": ua.Range(0.0, capability.max_q_kvar),
                  "DcVoltageV": ua.Range(capability.voltage_min_v, capability.voltage_max_v),
                  "CellTempMinC": ua.Range(capability.temp_min_c, capability.temp_max_c),
                  "CellTempMaxC": ua.Range(capability.temp_min_c, capability.temp_max_c)}
        for name, rng in ranges.items():
            nodeid = ua.NodeId(f"{published.instance.child(name).Identifier}.EURange",
                               published.instance.node.nodeid.NamespaceIndex)
            await self.server.write_attribute_value(nodeid, ua.DataValue(ua.Variant(rng)))
        return wrote + len(ranges)

    # -------------------------------------------------------------------------------- gateway

    async def _publish_gateway(self, published: Published, now: dt.datetime) -> None:
        good = stale = bad = 0  # counted by identity: hashing an Enum member is a Python-level call
        charge = discharge = energy = stored = 0.0
        for supervisor, _ in self.units.values():
            snap = supervisor.snapshot()
            telemetry = snap.telemetry
            quality = telemetry.quality
            if quality is _Q_GOOD:
                good += 1
            elif quality is _Q_STALE:
                stale += 1
            else:
                bad += 1
            limits = snap.limits
            if limits is not None and snap.connected:
                charge += limits.max_charge_kw
                discharge += limits.max_discharge_kw
            soc_pct = telemetry.soc_pct
            if snap.capability is not None and soc_pct == soc_pct:  # not NaN
                energy += snap.capability.energy_kwh
                stored += snap.capability.energy_kwh * soc_pct / 100.0
        values: dict[str, Any] = {
            "GatewayId": self.gateway_id, "SoftwareVersion": __version__, "UnitCount": good + stale + bad,
            "UnitsGood": good, "UnitsStale": stale, "UnitsBad": bad,
            "AvailableChargeKw": charge, "AvailableDischargeKw": discharge, "EnergyKwh": energy,
            "SocPct": stored / energy * 100.0 if energy else math.nan,
        }
        for name, value in values.items():
            self._put(published, name, value, _GOOD, now)
        if self._changed:
            await self._notify()

    # ------------------------------------------------------------------------------- writing

    async def set_value(self, published: Published, name: str, value: Any, status: ua.StatusCode,
                        source_ts: dt.datetime, server_ts: dt.datetime) -> int:
        """:meth:`_put` for other writers (the campus mirror): same deadbands, Bad-means-no-value rule."""
        self._server_time = server_ts
        wrote = self._put(published, name, value, status, source_ts)
        if self._changed:
            await self._notify()
        return wrote

    def _put(self, published: Published, name: str, value: Any, status: ua.StatusCode,
             source_ts: dt.datetime) -> int:
        """Store one value if it moved beyond its deadband or its status changed; returns 1 if stored.

        The subscriptions hear of it at the next :meth:`_notify` (after the unit: no await per value).
        """
        code = status.value
        if _VARIANTS[name] is _DOUBLE and value != value and not code & _SEVERITY_MASK:  # Good NaN: nothing measured
            status, code = _NO_VALUE, _NO_VALUE_CODE
        shown = published.values.get(name)
        if shown is None:
            shown = self._shown(published, name)
        elif shown.code == code and not self._moved(name, shown.value, value):
            return 0
        return self._store(published, name, shown, value, status, source_ts)

    def _shown(self, published: Published, name: str) -> _Shown:
        """The :class:`_Shown` of one of the unit's variables, created (nothing shown yet) on first use."""
        shown = published.values.get(name)
        if shown is None:
            node = self._aspace.get(published.instance.child(name))
            shown = published.values[name] = _Shown(node.attributes[ua.AttributeIds.Value] if node else None)
        return shown

    def _store(self, published: Published, name: str, shown: _Shown, value: Any, status: ua.StatusCode,
               source_ts: dt.datetime) -> int:
        """Show ``value`` with ``status`` (the caller decided it is news); returns 1 if the node still exists.

        The DataValue is the one ``ua.DataValue(ua.Variant(value, variant), ...)`` builds, without asyncua's
        constructors: they guess and check the type of every value (~3 µs, more than the rest of a write);
        the variant here is the variable's declared type and the value the publisher's own. A Bad status
        carries a null value, as Part 4 (7.7.1) and asyncua's write path require. Built here rather than in a
        helper: one call less per written value.
        """
        code = status.value
        shown.value, shown.code = value, code
        attribute = shown.attribute
        if attribute is None:  # the node was deleted under us (its unit is being removed)
            return 0
        wrapped = _new(_Variant)
        if code & _BAD_MASK:
            wrapped.Value, wrapped.VariantType, wrapped.is_array = None, _NULL, False
        else:
            wrapped.Value, wrapped.VariantType, wrapped.is_array = value, _VARIANTS[name], isinstance(value, list)
        wrapped.Dimensions = None
        datavalue = _new(_Sample)
        datavalue.Encoding = 0
        datavalue.Value = wrapped
        datavalue.StatusCode = status
        datavalue.SourceTimestamp = source_ts
        datavalue.ServerTimestamp = self._server_time
        datavalue.SourcePicoseconds = datavalue.ServerPicoseconds = None
        if attribute.value_setter is not None:  # not ours (nothing sets one on our variables): asyncua's path
            attribute.value_setter(self._aspace[published.instance.child(name)], ua.AttributeIds.Value, datavalue)
        else:
            attribute.value = datavalue
            attribute.value_callback = None
        if attribute.datachange_callbacks:
            self._changed.append((attribute, datavalue))
        self.values_written += 1
        return 1

    async def _notify(self) -> None:
        """Call the subscriptions' data-change callbacks for what :meth:`_put` stored, as asyncua would."""
        changed, self._changed = self._changed, []
        for attribute, datavalue in changed:
            for handle, callback in list(attribute.datachange_callbacks.items()):
                try:
                    await callback(handle, datavalue)
                except Exception:  # asyncua logs and goes on; one client's trouble is not the publisher's
                    self.notify_failures += 1

    def _moved(self, name: str, old: Any, new: Any) -> bool:
        if isinstance(new, float) and isinstance(old, float):
            if new == old:
                return False
            if math.isnan(old) or math.isnan(new):
                return math.isnan(old) != math.isnan(new)
            return abs(new - old) > self.deadbands.get(name, self.default_deadband)
        return bool(old != new)
