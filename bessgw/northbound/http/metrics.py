"""``/metrics``: the gateway's state and counters in the Prometheus exposition format.

Nothing is instrumented for metrics on the hot paths: at scrape time collectors read what the gateway
keeps anyway — unit snapshots, control's last state, the journal's and the transports' counters, the
federation's membership and drop counters, campus dispatch's status — and turn them into metric families.
A scrape therefore costs only when Prometheus asks, and a poll costs the same with or without metrics.

Names follow the Prometheus conventions: ``bessgw_`` prefix, base units (``_watts``, ``_seconds``,
``_ratio``, ``_bytes``), ``_total`` for counters. Labels are bounded by config (unit ids, transport
endpoints, sources, drop reasons); never command ids or peers' addresses learned from the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from bessgw.control.arbitration import Mode
from bessgw.model import EffectiveLimits, Quality
from bessgw.northbound.http.api import TOKENS
from bessgw.northbound.http.families import (
    Collector,
    Family,
    LabelText,
    Registry,
    counter,
    gauge,
    histogram,
    sample,
)
from bessgw.unit.snapshot import UnitSnapshot

if TYPE_CHECKING:
    from bessgw.campus.service import CampusService
    from bessgw.control.service import ControlService
    from bessgw.federation.service import FederationService
    from bessgw.northbound.server import OpcUaServer

_KW_TO_W = 1000.0


def _finite(value: float) -> bool:
    return value == value and value not in (float("inf"), float("-inf"))


class UnitCollector:
    """Per unit: power, SOC, negotiated limits, quality, data age, connection (one label: ``unit``).

    Samples are rendered to text here, with the label text and the lines that change rarely (limits,
    quality, connection) kept across scrapes: see :mod:`bessgw.northbound.http.families` for why (the
    garbage collector, not the formatting, made a scrape's p99). Telemetry values are formatted every
    scrape: in a polling gateway every unit's snapshot is new by the next scrape anyway.
    """

    def __init__(self, snapshots: Callable[[], Iterable[UnitSnapshot]], clock: Callable[[], float] = time.time) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._unit = LabelText("unit")
        #: per unit id: (limits object, its three rendered lines) — limits change only on renegotiation
        self._limit_lines: dict[str, tuple[EffectiveLimits, str, str, str]] = {}
        #: per (unit id, quality): the rendered block of one 1 and three 0 lines, without the first name
        self._quality_lines: dict[tuple[str, Quality], str] = {}
        self._quality_label = LabelText("unit", "quality")

    def collect(self) -> Iterator[Family]:
        now = self._clock()
        p: list[str] = []
        q: list[str] = []
        soc: list[str] = []
        age: list[str] = []
        connected: list[str] = []
        charge: list[str] = []
        discharge: list[str] = []
        reactive: list[str] = []
        quality: list[str] = []
        limit_lines = self._limit_lines
        if len(limit_lines) > 100_000 or len(self._quality_lines) > 100_000:  # bounded; units come from config
            limit_lines.clear()
            self._quality_lines.clear()
        for snap in self._snapshots():
            unit_id = snap.unit_id
            label = self._unit(unit_id)
            telemetry = snap.telemetry
            if _finite(telemetry.p_kw):
                p.append(sample(label, telemetry.p_kw * _KW_TO_W))
            if _finite(telemetry.q_kvar):
                q.append(sample(label, telemetry.q_kvar * _KW_TO_W))
            if _finite(telemetry.soc_pct):
                soc.append(sample(label, telemetry.soc_pct / 100.0))
            age.append(sample(label, max(0.0, now - telemetry.timestamp)))
            connected.append(f"{label} 1.0\n" if snap.connected else f"{label} 0.0\n")
            limits = snap.limits
            if limits is not None:
                cached = limit_lines.get(unit_id)
                if cached is None or cached[0] is not limits:
                    cached = limit_lines[unit_id] = (limits, sample(label, limits.max_charge_kw * _KW_TO_W),
                                                     sample(label, limits.max_discharge_kw * _KW_TO_W),
                                                     sample(label, limits.max_q_kvar * _KW_TO_W))
                charge.append(cached[1])
                discharge.append(cached[2])
                reactive.append(cached[3])
            level = telemetry.quality
            block = self._quality_lines.get((unit_id, level))
            if block is None:
                block = self._quality_lines[(unit_id, level)] = _QUALITY_NAME.join(
                    f"{self._quality_label(unit_id, candidate.value)} {'1.0' if candidate is level else '0.0'}\n"
                    for candidate in Quality)
            quality.append(block)
        yield gauge("bessgw_unit_active_power_watts", "Measured active power (> 0 discharges)", ["unit"], lines=p)
        yield gauge("bessgw_unit_reactive_power_volt_amperes_reactive", "Measured reactive power", ["unit"], lines=q)
        yield gauge("bessgw_unit_state_of_charge_ratio", "State of charge, 0..1", ["unit"], lines=soc)
        yield gauge("bessgw_unit_max_charge_watts", "Negotiated charge limit", ["unit"], lines=charge)
        yield gauge("bessgw_unit_max_discharge_watts", "Negotiated discharge limit", ["unit"], lines=discharge)
        yield gauge("bessgw_unit_max_reactive_power_volt_amperes_reactive", "Negotiated reactive power limit",
                    ["unit"], lines=reactive)
        yield gauge(_QUALITY_NAME, "1 for the unit's current data quality", ["unit", "quality"], lines=quality)
        yield gauge("bessgw_unit_data_age_seconds", "Age of the unit's latest telemetry", ["unit"], lines=age)
        yield gauge("bessgw_unit_connected", "1 while the unit's session is up", ["unit"], lines=connected)


_QUALITY_NAME = "bessgw_unit_quality"


class ControlCollector:
    """Control: target, delivery, shortfall, arbitration mode and source, step time, envelope, journal."""

    def __init__(self, control: Callable[[], ControlService | None]) -> None:
        self._control = control

    def collect(self) -> Iterator[Family]:
        service = self._control()
        yield gauge("bessgw_control_running", "1 while the control service runs", [],
                    [((), 0.0 if service is None else 1.0)])
        if service is None:
            return
        loop, state = service.loop, service.state
        decision = state.arbitration
        yield gauge("bessgw_control_target_watts", "Arbitrated active power target", [],
                    [((), state.target_p_kw * _KW_TO_W)])
        yield gauge("bessgw_control_delivered_watts", "Active power commanded to the units this period", [],
                    [((), state.delivered_p_kw * _KW_TO_W)])
        yield gauge("bessgw_control_shortfall_watts", "Target the allocated units cannot meet", [],
                    [((), state.shortfall_p_kw * _KW_TO_W)])
        yield gauge("bessgw_control_mode", "1 for the arbitration mode in force", ["mode"],
                    [((mode.value,), 1.0 if decision.mode is mode else 0.0) for mode in Mode])
        sources = [table.name for table in service.settings.sources]
        yield gauge("bessgw_control_source_active", "1 for the setpoint source in force", ["source"],
                    [((name,), 1.0 if decision.source == name else 0.0) for name in sources])
        yield gauge("bessgw_control_healthy", "1 while control steps within three periods", [],
                    [((), 1.0 if loop.healthy() else 0.0)])
        yield counter("bessgw_control_steps", "Control periods completed", [], [((), loop.periods)])
        yield histogram("bessgw_control_step_duration_seconds", "Duration of a control step, writes included",
                        [], [((), loop.step_duration)])
        yield counter("bessgw_control_envelope_clamps", "Unit values changed by the safety envelope", [],
                      [((), loop.envelope_clamps)])
        yield counter("bessgw_control_decisions_expired", "Writes dropped because their decision was too old", [],
                      [((), loop.decisions_expired)])
        yield counter("bessgw_control_write_timeouts", "Unit writes that did not finish within write_timeout_s", [],
                      [((), loop.write_timeouts)])
        yield counter("bessgw_control_increases_held", "Unit increases not written because a decrease of their "
                      "control step was not confirmed", [], [((), loop.increases_held)])
        yield gauge("bessgw_control_write_errors", "Units whose write failed in the last period", [],
                    [((), len(state.write_errors))])
        journal = service.journal
        yield counter("bessgw_journal_appends", "Committed (fsync'd) journal transactions", [],
                      [((), journal.appends)])
        yield histogram("bessgw_journal_commit_duration_seconds", "Journal COMMIT time (WAL fsync)", [],
                        [((), journal.commit_duration)])


class FederationCollector:
    """Gossip: members per state, datagrams and bytes, drops per reason."""

    def __init__(self, federation: Callable[[], FederationService | None]) -> None:
        self._federation = federation

    def collect(self) -> Iterator[Family]:
        service = self._federation()
        if service is None:
            return
        node = service.node
        by_status: dict[str, int] = {"alive": 0, "suspect": 0, "dead": 0, "left": 0, "incompatible": 0}
        membership = node.membership
        if membership is not None:
            for member in membership.members.values():
                name = "incompatible" if node.incompatible(member.node) else member.status.name.lower()
                by_status[name] = by_status.get(name, 0) + 1
            by_status["incompatible"] += sum(1 for p in node.versions.incompatible_peers(node.boot_of)
                                             if p.node not in membership.members)
        yield gauge("bessgw_gossip_members", "Campus members by state, as this gateway sees them", ["state"],
                    [((state,), n) for state, n in sorted(by_status.items())])
        traffic = node.transport.counters
        yield counter("bessgw_gossip_datagrams", "Gossip datagrams", ["direction"],
                      [(("sent",), traffic.sent_datagrams), (("received",), traffic.received_datagrams)])
        yield counter("bessgw_gossip_bytes", "Gossip bytes", ["direction"],
                      [(("sent",), traffic.sent_bytes), (("received",), traffic.received_bytes)])
        yield counter("bessgw_gossip_drops", "Gossip datagrams dropped, by reason", ["reason"],
                      [((reason,), n) for reason, n in sorted(node.drops.items())])


class CampusCollector:
    """Campus dispatch: this gateway's share and lease time left, campus shortfall."""

    def __init__(self, campus: Callable[[], CampusService | None], gateway_id: str) -> None:
        self._campus = campus
        self._gateway_id = gateway_id

    def collect(self) -> Iterator[Family]:
        service = self._campus()
        if service is None:
            return
        status = service.status()
        share, lease = [], []
        for row in status.gateways:
            if row.gateway_id != self._gateway_id:
                continue  # peers report their own: labels stay bounded by this gateway
            if row.share_p_kw is not None:
                share.append(((), row.share_p_kw * _KW_TO_W))
            if row.lease_time_left_s is not None:
                lease.append(((), row.lease_time_left_s))
        yield gauge("bessgw_campus_share_watts", "This gateway's campus share", [], share)
        yield gauge("bessgw_campus_lease_time_left_seconds", "Time left on this gateway's etcd lease", [], lease)
        yield gauge("bessgw_campus_shortfall_watts", "Campus setpoint the campus cannot meet", [],
                    [((), status.shortfall_p_kw * _KW_TO_W)])
        yield counter("bessgw_campus_corrupt_records", "Campus records that failed to decode", [],
                      [((), status.corrupt_records)])
        yield counter("bessgw_campus_shares_refused", "Versions of this gateway's campus share refused because "
                      "the campus setpoint does not explain them", [], [((), status.shares_refused)])


class OpcUaCollector:
    """The OPC UA server: sessions, subscriptions, refused sessions."""

    def __init__(self, opcua: Callable[[], OpcUaServer | None]) -> None:
        self._opcua = opcua

    def collect(self) -> Iterator[Family]:
        server = self._opcua()
        connections = getattr(server, "connections", None)
        if server is None or connections is None:
            return
        yield gauge("bessgw_opcua_sessions", "Activated OPC UA sessions", [], [((), connections.active_sessions())])
        yield counter("bessgw_opcua_sessions_refused", "Sessions refused at the session limit", [],
                      [((), connections.sessions_refused)])
        subscriptions = 0
        inner = getattr(server, "_server", None)
        if inner is not None:
            subscriptions = len(getattr(inner.iserver.subscription_service, "subscriptions", {}))
        yield gauge("bessgw_opcua_subscriptions", "OPC UA subscriptions", [], [((), subscriptions)])
        faults = getattr(server, "service_faults", None)
        if faults is not None:
            yield counter("bessgw_opcua_service_faults", "Requests refused with a ServiceFault, by status", ["status"],
                          [((status,), count) for status, count in sorted(faults.totals.items())])


class HttpCollector:
    """The HTTP listener itself: malformed requests and connections closed to make room."""

    def __init__(self, listener: Callable[[], Any]) -> None:
        self._listener = listener

    def collect(self) -> Iterator[Family]:
        listener = self._listener()
        if listener is None:
            return
        yield counter("bessgw_http_bad_requests", "Requests the HTTP listener could not parse (answered 400)", [],
                      [((), listener.request_errors.bad_requests)])
        yield counter("bessgw_http_connections_evicted", "HTTP connections closed to stay within the bound", [],
                      [((), listener.connections.evicted)])
        tokens = listener.app.get(TOKENS)  # the REST API's, when its routes are added
        if tokens is not None:
            yield counter("bessgw_http_auth_checks_refused", "REST token checks refused (429) because their client "
                          "address had too many in progress", [], [((), tokens.refused_attempts)])


def build_registry(collectors: Iterable[Collector]) -> Registry:
    """A registry of its own (not a process-global one): a reload or a test builds a fresh one."""
    return Registry(collectors)
