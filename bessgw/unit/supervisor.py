"""The unit supervisor: one task per battery unit, the bulkhead between devices, the only door to a driver.

It identifies the unit, negotiates its capability, polls it on its own schedule, keeps the device-side
heartbeat going, decides telemetry quality by age, and reconnects with jittered exponential backoff. A
hung or failing unit never blocks another: everything device-related happens inside this task, and this
is the only place with a broad ``except`` (the device boundary). Going down and coming back are each
logged once, not once per poll.

Every call into the driver — ``identify``, ``read``, ``write_setpoint``, ``heartbeat``, ``set_running``,
``reset_fault``, ``close`` — goes through this class and is serialised by one lock, which is what makes the
promise of :class:`~bessgw.plugin.VendorDriver` true: a driver never sees two calls at once. Upper layers
never touch the driver; they read :meth:`UnitSupervisor.snapshot` (one immutable value per change) and
command through :meth:`UnitSupervisor.apply`.

Reconnects are traced here, where they happen for every transport: each attempt to bring a lost unit back
(identify and check it) is one root span ``unit.reconnect`` with the unit, transport, endpoint, attempt
number since the loss, result and error type. The first connection at start-up is not a reconnect. While
tracing is off the OpenTelemetry API hands out a no-op span, once per attempt (seconds apart): the poll
path has no tracing hook at all.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from bessgw.backoff import Backoff
from bessgw.compat import timeout
from bessgw.config import UnitDefaults
from bessgw.errors import DecisionExpiredError, DeviceError, DeviceProtocolError, IncompatibleDeviceError
from bessgw.model import (
    Capability,
    EffectiveLimits,
    Negotiation,
    Quality,
    Setpoint,
    SiteLimits,
    Telemetry,
    UnitState,
    negotiate,
    tighten,
)
from bessgw.plugin.manager import PluginManager
from bessgw.plugin.roles import ChemistryModel, DriverSpec, Logger, TelemetryObserver, VendorDriver
from bessgw.unit.snapshot import UnitSnapshot

#: renegotiate when SOC or temperature moved this much since the last negotiation
_RENEGOTIATE_SOC_PCT = 0.5
_RENEGOTIATE_TEMP_C = 0.5
#: how often ``auto_start`` asks a unit still in standby again
_AUTO_START_RETRY_S = 5.0
#: a refused unit is asked again this rarely (its firmware may have been upgraded meanwhile)
_REFUSED_RETRY_S = 60.0

#: spans of unit reconnects (no-op unless the daemon installed a tracer provider: [tracing])
TRACER = trace.get_tracer("bessgw.unit")
#: a reconnect is a trace of its own, whatever context the unit's task was started in
_ROOT_CONTEXT = otel_context.Context()


class UnitSupervisor:
    """Runs one unit: identify → negotiate → poll/heartbeat, reconnecting on device errors."""

    def __init__(
        self,
        unit_id: str,
        driver: VendorDriver,
        spec: DriverSpec,
        timing: UnitDefaults,
        site: SiteLimits,
        chemistries: dict[str, ChemistryModel],
        *,
        expected_chemistry: str | None = None,
        pm: PluginManager | None = None,
        observers: list[TelemetryObserver] | None = None,
        log: Logger,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        telemetry_log_interval_s: float = 0.0,
        auto_start: bool = False,
        clock: Callable[[], float] = time.time,
        endpoint: str = "",
    ) -> None:
        self.unit_id = unit_id
        #: where the unit is (``host:port``, ``interface:channel``, a URL), for reconnect spans
        self.endpoint = endpoint
        self._driver = driver
        #: one driver call at a time (the VendorDriver concurrency contract)
        self._driver_lock = asyncio.Lock()
        self._snapshot: UnitSnapshot | None = None
        self._identified: Capability | None = None
        self.spec = spec
        self.timing = timing
        self.site = site
        self.chemistries = chemistries
        self.expected_chemistry = expected_chemistry.lower() if expected_chemistry else None
        self.pm = pm
        self.observers = list(observers or ())
        self.log = log
        self.clock = clock
        self.backoff = Backoff(reconnect_min_s, reconnect_max_s)
        self.telemetry_log_interval_s = telemetry_log_interval_s
        self.auto_start = auto_start
        self._start_requested_at = -math.inf

        self._capability: Capability | None = None
        self._limits: EffectiveLimits | None = None
        self._refused_reason = ""
        self._connected = False
        self.last_good: Telemetry | None = None
        self._telemetry = Telemetry(unit_id=unit_id, timestamp=clock(), quality=Quality.BAD,
                                   state=UnitState.OFFLINE, quality_reason="not connected yet")
        self.polls = 0
        self.poll_errors = 0
        self.observer_errors = 0
        self.updated = asyncio.Event()  # set on every published telemetry; tests and control wait on it
        #: set by control: while it returns False the device heartbeat is withheld, so the container's own
        #: watchdog takes over when the gateway can no longer control it
        self.heartbeat_gate: Callable[[], bool] | None = None
        self.heartbeats_withheld = 0
        self._negotiated_at: tuple[Capability | None, float, float] | None = None
        self._down_logged = False
        self._down_reason = ""
        self._down_answering = False
        self._last_telemetry_log = 0.0
        #: reconnect attempts since the unit was lost (or since its first connection failed); 0 once back
        self.reconnect_attempts = 0
        self._reconnecting = False  # every session after the first one starts with a reconnect

    # ----------------------------------------------------------------------------- public view

    def snapshot(self) -> UnitSnapshot:
        """The unit as the rest of the gateway may see it now; the same object until something changes."""
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = UnitSnapshot(self.unit_id, self._telemetry, self._capability, self._limits,
                                                 self._refused_reason, self._connected,
                                                 self.timing.stale_after_s)
        return snap

    # read-only views of the snapshot's fields (tests and logs); writes go through the setters below, which
    # invalidate the cached snapshot
    @property
    def telemetry(self) -> Telemetry:
        return self._telemetry

    @telemetry.setter
    def telemetry(self, value: Telemetry) -> None:
        self._telemetry, self._snapshot = value, None

    @property
    def capability(self) -> Capability | None:
        return self._capability

    @capability.setter
    def capability(self, value: Capability | None) -> None:
        if value is not self._capability:
            self._capability, self._snapshot = value, None

    @property
    def limits(self) -> EffectiveLimits | None:
        return self._limits

    @limits.setter
    def limits(self, value: EffectiveLimits | None) -> None:
        if value is not self._limits:
            self._limits, self._snapshot = value, None

    @property
    def refused_reason(self) -> str:
        return self._refused_reason

    @refused_reason.setter
    def refused_reason(self, value: str) -> None:
        if value != self._refused_reason:
            self._refused_reason, self._snapshot = value, None

    @property
    def connected(self) -> bool:
        return self._connected

    @connected.setter
    def connected(self, value: bool) -> None:
        if value != self._connected:
            self._connected, self._snapshot = value, None

    @property
    def driver_name(self) -> str:
        """The driver's registered name (for logs and status); the driver itself stays private."""
        return self.spec.name

    # ------------------------------------------------------------------------------ driver door

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        """Call one driver method under the driver lock: a driver never sees two calls at once."""
        async with self._driver_lock:
            return await method(*args)

    async def apply(self, setpoint: Setpoint, not_after: float | None = None) -> Setpoint:
        """Write ``setpoint`` clamped to the effective limits; returns what was written.

        Refuses (``DeviceError``) while the unit is not negotiated or not connected. Control may still
        write 0 kW to a connected unit whose data is stale, to take it out of service safely.

        ``not_after`` is the decision's deadline on the monotonic clock, checked immediately before the
        driver is called (after waiting for the driver): past it, :class:`DecisionExpiredError` and
        nothing is written — a gateway that wakes from a pause never writes what it decided before.
        """
        if self._limits is None or not self._connected:
            raise DeviceError(f"unit {self.unit_id} is not available ({self._refused_reason or 'offline'})")
        clamped = Setpoint(
            p_kw=self.limits.clamp_p(setpoint.p_kw),
            q_kvar=max(-self.limits.max_q_kvar, min(self.limits.max_q_kvar, setpoint.q_kvar)),
            command_id=setpoint.command_id,
            source=setpoint.source,
            issued_at=setpoint.issued_at,
            expires_at=setpoint.expires_at,
        )
        async with self._driver_lock:
            if not_after is not None and time.monotonic() > not_after:
                raise DecisionExpiredError(f"unit {self.unit_id}: the decision behind this setpoint is"
                                           f" {time.monotonic() - not_after:.3f} s past its deadline")
            await self._driver.write_setpoint(clamped)
        return clamped

    async def reset_fault(self) -> None:
        """Ask the unit to reset latched faults; ``NotImplementedError`` if its driver cannot."""
        if not self._connected:
            raise DeviceError(f"unit {self.unit_id} is not connected")
        await self._call(self._driver.reset_fault)

    async def set_running(self, running: bool) -> None:
        """Start (True) or stop (False) the unit's power conversion; ``NotImplementedError`` if it cannot."""
        if not self._connected:
            raise DeviceError(f"unit {self.unit_id} is not connected")
        await self._call(self._driver.set_running, running)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Release what the driver holds, bounded in time (after :meth:`run` was cancelled).

        Errors are logged, not raised: the unit is going away anyway.
        """
        try:
            async with timeout(timeout_s):
                await self._call(self._driver.close)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # the device boundary, at the end of the unit's life
            self.log.warning("driver_close_failed", error=f"{type(err).__name__}: {err}")

    # ----------------------------------------------------------------------------------- task

    async def run(self) -> None:
        """Supervise the unit until cancelled; never raises anything but ``CancelledError``."""
        try:
            while True:
                try:
                    await self._session()
                except asyncio.CancelledError:
                    raise
                except IncompatibleDeviceError as err:
                    self._refuse(str(err))
                    await asyncio.sleep(_REFUSED_RETRY_S)
                    continue
                except DeviceProtocolError as err:  # it answers, but with an error: its data is bad
                    self._went_down(f"{type(err).__name__}: {err}", answering=True)
                except DeviceError as err:
                    self._went_down(f"{type(err).__name__}: {err}")
                except Exception as err:  # the device boundary: a driver bug must not kill the gateway
                    self.log.error("unit_driver_crashed", error=f"{type(err).__name__}: {err}", exc_info=True)
                    self._went_down(f"driver error: {type(err).__name__}: {err}")
                self.connected = False
                await self._wait_requalifying(self.backoff.next_delay())
        finally:
            self.connected = False

    async def _session(self) -> None:
        reconnect, self._reconnecting = self._reconnecting, True
        if reconnect:
            await self._traced_reconnect()
        else:
            await self._connect()
        await _first_failure(
            asyncio.create_task(self._poll_loop(), name=f"poll:{self.unit_id}"),
            asyncio.create_task(self._heartbeat_loop(), name=f"heartbeat:{self.unit_id}"),
            asyncio.create_task(self._age_loop(), name=f"age:{self.unit_id}"),
        )

    async def _traced_reconnect(self) -> None:
        """:meth:`_connect` as a ``unit.reconnect`` span: what was tried, where, the how-many-th time, and how
        it ended (``ok``, ``refused``, ``error`` with the error type, or ``cancelled`` at shutdown)."""
        self.reconnect_attempts += 1
        span = TRACER.start_span("unit.reconnect", context=_ROOT_CONTEXT, kind=trace.SpanKind.CLIENT, attributes={
            "unit": self.unit_id, "transport": self.spec.transport, "endpoint": self.endpoint,
            "attempt": self.reconnect_attempts})
        try:
            await self._connect()
        except asyncio.CancelledError:
            span.set_attribute("result", "cancelled")
            raise
        except BaseException as err:
            span.set_attribute("result", "refused" if isinstance(err, IncompatibleDeviceError) else "error")
            span.set_attribute("error.type", type(err).__name__)
            span.set_status(trace.Status(trace.StatusCode.ERROR, str(err)[:200]))
            raise
        else:
            span.set_attribute("result", "ok")
            self.reconnect_attempts = 0
        finally:
            span.end()

    async def _connect(self) -> None:
        """Identify the unit and check it against config; on return it is connected."""
        offer = await self._identify()
        self.capability = offer
        self._identified = offer
        if self.expected_chemistry and offer.chemistry != self.expected_chemistry:
            raise IncompatibleDeviceError(
                f"unit offers chemistry {offer.chemistry!r} but config expects {self.expected_chemistry!r}"
            )
        self.connected = True
        self.refused_reason = ""
        self._negotiated_at = None

    async def _identify(self) -> Capability:
        """``driver.identify()``, while the last known values keep ageing (it may wait seconds)."""
        identify = asyncio.ensure_future(self._call(self._driver.identify))
        step = max(0.05, min(self.timing.stale_after_s, self.timing.bad_after_s) / 4)
        try:
            while True:
                done, _ = await asyncio.wait({identify}, timeout=step)
                if done:
                    return identify.result()
                if self.last_good is not None:
                    view = self._offline_view()
                    if view.quality is not self.telemetry.quality:
                        self._publish(view, negotiate_too=False)
        finally:
            if not identify.done():
                identify.cancel()
                await asyncio.gather(identify, return_exceptions=True)

    async def _poll_loop(self) -> None:
        interval = self.timing.poll_interval_s
        loop = asyncio.get_running_loop()
        # first poll now, later ones at a random phase: units that (re)connect together (start-up, a
        # switch reboot) would otherwise poll in lockstep forever and load the loop in bursts
        next_at = loop.time() + random.uniform(0.0, interval)
        while True:
            telemetry = await self._call(self._driver.read)
            self.polls += 1
            self._publish(self._qualify(telemetry))
            if self.auto_start and telemetry.state is UnitState.STANDBY:
                await self._start_unit()
            if self._down_logged:
                self._down_logged = False
                self.log.info("unit_recovered", polls=self.polls)
            self.backoff.reset()
            next_at += interval
            now = loop.time()
            if next_at < now:  # overran: skip the missed slots instead of bursting to catch up
                next_at = now + interval - ((now - next_at) % interval)
            await asyncio.sleep(next_at - now)

    async def _start_unit(self) -> None:
        """``auto_start``: ask a unit found in standby to run, at most every few seconds."""
        now = self.clock()
        if now - self._start_requested_at < _AUTO_START_RETRY_S or self.limits is None:
            return
        self._start_requested_at = now
        try:
            await self._call(self._driver.set_running, True)
        except NotImplementedError:
            self.auto_start = False
            self.log.warning("auto_start_unsupported", driver=self.spec.name)
            return
        self.log.info("unit_start_requested")

    async def _heartbeat_loop(self) -> None:
        interval = self.timing.heartbeat_interval_s
        first_interval: float | None = random.uniform(0.0, interval)  # beat now, then a random phase
        while True:
            gate = self.heartbeat_gate
            if gate is None or gate():
                await self._call(self._driver.heartbeat)
            else:
                self.heartbeats_withheld += 1
            await asyncio.sleep(first_interval if first_interval is not None else interval)
            first_interval = None

    async def _age_loop(self) -> None:
        """While a read hangs (a frozen device, a long request timeout) the published data keeps ageing.

        Quality follows the data's age whatever the timeouts: Good data becomes Stale after
        ``stale_after_s`` and Bad after ``bad_after_s`` even if no read returns in between.
        """
        step = max(0.05, min(self.timing.stale_after_s, self.timing.bad_after_s) / 4)
        while True:
            await asyncio.sleep(step)
            current = self._telemetry
            if current.quality is Quality.BAD or self.last_good is None:
                continue
            aged = self._qualify(self.last_good, remember=False)
            if aged.quality is not current.quality and aged.quality is not Quality.GOOD:
                self._publish(aged, negotiate_too=False)

    # ------------------------------------------------------------------------------- quality

    def _qualify(self, telemetry: Telemetry, remember: bool = True) -> Telemetry:
        """Apply the age rule: data older than stale_after_s is stale, older than bad_after_s is bad."""
        age = telemetry.age_s(self.clock())
        if telemetry.quality is Quality.GOOD:
            if remember:
                self.last_good = telemetry
            if age > self.timing.bad_after_s:
                return telemetry.with_quality(Quality.BAD, f"no data for {age:.1f} s")
            if age > self.timing.stale_after_s:
                return telemetry.with_quality(Quality.STALE, f"data {age:.1f} s old")
        return telemetry

    async def _wait_requalifying(self, delay_s: float) -> None:
        """Sleep ``delay_s`` while the link is down, ageing the last known values (stale, then bad)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + delay_s
        step = max(0.05, min(self.timing.stale_after_s, self.timing.bad_after_s) / 4)
        while True:
            view = self._offline_view()
            if view.quality is not self.telemetry.quality:
                self._publish(view, negotiate_too=False)
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(step, remaining))

    def _offline_view(self) -> Telemetry:
        """What to show while the link is down: the last values, never Good; Bad once too old."""
        reason = f"link down: {self._down_reason}"
        base = self.last_good
        if base is None:
            return Telemetry(unit_id=self.unit_id, timestamp=self.clock(), quality=Quality.BAD,
                             state=UnitState.OFFLINE, quality_reason=reason)
        if self._down_answering:  # an error answer (e.g. a Modbus exception code): bad at once
            return base.with_quality(Quality.BAD, self._down_reason)
        aged = self._qualify(base)
        if aged.quality is Quality.GOOD:
            return base.with_quality(Quality.STALE, reason)
        return aged.with_quality(aged.quality, f"{reason}; {aged.quality_reason}")

    def _went_down(self, reason: str, answering: bool = False) -> None:
        """The session ended; ``answering``: the device is reachable but answers with errors (BAD now)."""
        self.poll_errors += 1
        self._down_reason = reason
        if not self._down_logged:
            self._down_logged = True
            self.log.warning("unit_down", reason=reason)
        self._down_answering = answering
        self._publish(self._offline_view(), negotiate_too=False)

    def _refuse(self, reason: str) -> None:
        if reason != self.refused_reason:
            self.log.error("unit_refused", reason=reason)
        self.refused_reason = reason
        self.limits = None
        self.connected = False
        self._publish(Telemetry(unit_id=self.unit_id, timestamp=self.clock(), quality=Quality.BAD,
                                state=UnitState.OFFLINE, quality_reason=f"refused: {reason}"),
                      negotiate_too=False)

    # ---------------------------------------------------------------------------- negotiation

    def _renegotiate_if_needed(self, telemetry: Telemetry) -> None:
        offer = self._driver.current_offer() or self._identified
        if offer is None:
            return
        soc, temp = telemetry.soc_pct, _worst_temp(telemetry)
        last = self._negotiated_at
        if last is not None and last[0] == offer and _close(last[1], soc, _RENEGOTIATE_SOC_PCT) and _close(
            last[2], temp, _RENEGOTIATE_TEMP_C
        ):
            return
        self._negotiated_at = (offer, soc, temp)
        self.capability = offer
        result = self._negotiate(offer, soc, temp, telemetry)
        if not result.accepted:
            if result.reason != self.refused_reason:
                self.log.error("unit_refused", reason=result.reason)
            self.refused_reason = result.reason
            self.limits = None
            return
        if self.refused_reason:
            self.log.info("unit_accepted")
        self.refused_reason = ""
        self.limits = result.limits

    def _negotiate(self, offer: Capability, soc: float, temp: float, telemetry: Telemetry) -> Negotiation:
        chemistry = self.chemistries.get(offer.chemistry)
        envelope = None
        if chemistry is not None and not (math.isnan(soc) or math.isnan(temp)):
            envelope = chemistry.envelope(soc, temp)
        elif chemistry is not None:
            envelope = chemistry.envelope(50.0, 25.0)  # limits go to 0 below for unknown SOC/temp
        result = negotiate(offer, envelope, self.site, soc_pct=soc, temp_c=temp,
                           min_protocol_version=self.spec.min_protocol_version,
                           known_chemistries=self.chemistries)
        if result.limits is None or self.pm is None:
            return result
        limits = result.limits
        for impl in self.pm.hook.adjust_limits.get_hookimpls():
            try:
                proposed = impl.function(unit_id=self.unit_id, capability=offer, limits=limits,
                                         telemetry=telemetry)
            except Exception as err:  # a plugin bug narrows nothing and is logged
                self.log.error("adjust_limits_failed", plugin=impl.plugin_name, error=repr(err))
                continue
            if proposed is not None:
                limits = tighten(limits, proposed, f"plugin {impl.plugin_name}")
        return Negotiation(limits=limits)

    # ------------------------------------------------------------------------------ publishing

    def _publish(self, telemetry: Telemetry, negotiate_too: bool = True) -> None:
        self.telemetry = telemetry
        if negotiate_too and telemetry.quality is Quality.GOOD:
            self._renegotiate_if_needed(telemetry)
        for observer in self.observers:
            try:
                observer.on_telemetry(telemetry)
            except Exception as err:
                self.observer_errors += 1
                if self.observer_errors <= 3:
                    self.log.error("telemetry_observer_failed", observer=type(observer).__name__, error=repr(err))
        self.updated.set()
        self.updated = asyncio.Event()
        if self.telemetry_log_interval_s > 0:
            now = self.clock()
            if now - self._last_telemetry_log >= self.telemetry_log_interval_s:
                self._last_telemetry_log = now
                self.log.info("telemetry", **_log_fields(telemetry, self.limits))

    async def wait_update(self, timeout_s: float) -> Telemetry:
        """Wait for the next published telemetry (bounded); for tests and control loops."""
        event = self.updated
        async with timeout(timeout_s):
            await event.wait()
        return self.telemetry


async def _first_failure(*tasks: asyncio.Task[None]) -> None:
    """Run endless loops side by side until one fails; cancel the rest and re-raise that failure.

    Unlike a TaskGroup this raises the device error itself rather than an ExceptionGroup, so the
    supervisor's ``except DeviceError`` sees it; the siblings are always cancelled and awaited.
    """
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    raise DeviceError("a unit loop ended unexpectedly")


def _worst_temp(telemetry: Telemetry) -> float:
    """The temperature negotiation must respect: the extreme cell on the side that is out of range."""
    values = [v for v in (telemetry.cell_temp_min_c, telemetry.cell_temp_max_c) if not math.isnan(v)]
    if not values:
        return math.nan
    low, high = min(values), max(values)
    return low if abs(low - 25.0) > abs(high - 25.0) else high


def _close(a: float, b: float, tolerance: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) < tolerance


def _log_fields(telemetry: Telemetry, limits: EffectiveLimits | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "quality": telemetry.quality.value,
        "state": telemetry.state.value,
        "soc_pct": round(telemetry.soc_pct, 2),
        "p_kw": round(telemetry.p_kw, 1),
        "dc_v": round(telemetry.dc_v, 1),
        "temp_max_c": round(telemetry.cell_temp_max_c, 1),
    }
    if telemetry.quality_reason:
        fields["reason"] = telemetry.quality_reason
    if limits is not None:
        fields["max_charge_kw"] = round(limits.max_charge_kw, 1)
        fields["max_discharge_kw"] = round(limits.max_discharge_kw, 1)
    return fields
