"""Prometheus metrics of the southbound transports, read from their own counters at scrape time.

Lives in the daemon because only the daemon holds the transports (upper layers never see them); the
HTTP server gets this collector like any other. Labels: ``transport`` and ``endpoint`` (``host:port`` of
a Modbus device, ``interface:channel`` of a CAN bus, the URL of an OPC UA server) — all from config.

The request latency is one histogram per transport, merged over its endpoints at scrape time: per
endpoint it would be 17 series each (two thirds of a 200-endpoint scrape), and a slow device shows in its
own timeouts and breaker anyway.

Modbus endpoints (hundreds per gateway) are rendered to text here with label text kept across scrapes,
so a scrape holds no tuple per sample (the garbage collector's work was most of a scrape's p99; see
:mod:`bessgw.northbound.http.families`). CAN buses and OPC UA servers are few and use plain rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bessgw.northbound.http.families import Family, LabelText, counter, gauge, histogram, sample
from bessgw.timing import DurationHistogram

_BREAKER_STATES = ("closed", "open", "half_open")
_RESULTS = ("ok", "timeout", "error", "exception", "breaker_open")


class TransportCollector:
    """Requests, results, latency, breaker state and reconnects per endpoint; CAN frames and bus-off."""

    def __init__(self, transports: Callable[[], Iterable[Any]]) -> None:
        self._transports = transports
        self._endpoint = LabelText("transport", "endpoint")
        self._result = LabelText("transport", "endpoint", "result")
        self._breaker = LabelText("transport", "endpoint", "state")

    def collect(self) -> Iterator[Family]:
        requests, results, reconnects, connect_failures, breaker, trips, latency = [], [], [], [], [], [], []
        can_frames, can_errors, can_bus_off, can_opens, can_coalesced = [], [], [], [], []
        # Modbus endpoints as rendered lines (they follow the rows of the other transports in each family)
        m_requests: list[str] = []
        m_results: list[str] = []
        m_connects: list[str] = []
        m_connect_failures: list[str] = []
        m_breaker: list[str] = []
        m_trips: list[str] = []
        m_undecodable: list[str] = []
        m_late: list[str] = []
        for transport in self._transports():
            name = transport.name
            if name == "modbus":
                endpoints = list(transport.endpoints.values())
                latency.append(((name,), DurationHistogram.merged(endpoint.latency for endpoint in endpoints)))
                for endpoint in endpoints:
                    label = self._endpoint(name, endpoint.name)
                    stats = endpoint.stats
                    m_requests.append(sample(label, stats.requests))
                    answered = stats.requests - stats.timeouts - stats.failures - stats.exception_responses
                    for result, n in zip(_RESULTS, (max(0, answered), stats.timeouts, stats.failures,
                                                    stats.exception_responses, stats.breaker_rejections),
                                         strict=True):
                        m_results.append(sample(self._result(name, endpoint.name, result), n))
                    m_connects.append(sample(label, stats.connects))
                    m_connect_failures.append(sample(label, stats.connect_failures))
                    state = endpoint.breaker.state.value
                    for candidate in _BREAKER_STATES:
                        m_breaker.append(f"{self._breaker(name, endpoint.name, candidate)}"
                                         f" {'1.0' if candidate == state else '0.0'}\n")
                    m_trips.append(sample(label, endpoint.breaker.trips))
                    m_undecodable.append(sample(label, stats.undecodable))
                    m_late.append(sample(label, stats.late_answers))
            elif name == "can":
                for bus_name, stats in transport.bus_stats().items():
                    labels = (name, bus_name)
                    can_frames.append(((*labels, "rx"), stats.frames_rx))
                    can_frames.append(((*labels, "tx"), stats.frames_tx))
                    can_errors.append((labels, stats.error_frames))
                    can_bus_off.append((labels, stats.bus_off))
                    can_opens.append((labels, stats.opens))
                    can_coalesced.append((labels, stats.frames_coalesced))
                    results.append(((*labels, "tx_error"), stats.tx_errors))
            elif name == "opcua":
                for endpoint in list(transport.endpoints.values()):
                    labels = (name, endpoint.key.url)
                    reconnects.append((labels, endpoint.connects))
                    connect_failures.append((labels, endpoint.connect_failures))
                    requests.append((labels, endpoint.reads))
                    results.append(((*labels, "handler_error"), endpoint.handler_errors))
        yield counter("bessgw_transport_requests", "Requests sent to devices", ["transport", "endpoint"], requests,
                      lines=m_requests)
        yield counter("bessgw_transport_results", "Request outcomes", ["transport", "endpoint", "result"], results,
                      lines=m_results)
        yield histogram("bessgw_transport_request_duration_seconds",
                        "Request latency, answered or not, over all endpoints of the transport", ["transport"], latency)
        yield counter("bessgw_transport_connects", "Connections (re)established", ["transport", "endpoint"],
                      reconnects, lines=m_connects)
        yield counter("bessgw_transport_connect_failures", "Failed connection attempts", ["transport", "endpoint"],
                      connect_failures, lines=m_connect_failures)
        yield gauge("bessgw_transport_breaker_state", "1 for the circuit breaker's current state",
                    ["transport", "endpoint", "state"], breaker, lines=m_breaker)
        yield counter("bessgw_transport_breaker_trips", "Times the circuit breaker opened", ["transport", "endpoint"],
                      trips, lines=m_trips)
        yield counter("bessgw_transport_undecodable_responses", "Answers that broke the protocol (garbage, bad "
                      "lengths, unknown transaction ids); the connection is reopened", ["transport", "endpoint"],
                      [], lines=m_undecodable)
        yield counter("bessgw_transport_late_answers", "Answers that came after their request had timed out "
                      "(dropped)", ["transport", "endpoint"], [], lines=m_late)
        yield counter("bessgw_can_frames", "CAN frames by direction", ["transport", "endpoint", "direction"],
                      can_frames)
        yield counter("bessgw_can_error_frames", "CAN error frames", ["transport", "endpoint"], can_errors)
        yield counter("bessgw_can_bus_off", "CAN bus-off events", ["transport", "endpoint"], can_bus_off)
        yield counter("bessgw_can_opens", "CAN bus (re)opens", ["transport", "endpoint"], can_opens)
        yield counter("bessgw_can_frames_coalesced", "Periodic telemetry frames superseded by a newer frame of the "
                      "same id before the driver read them (never alarms or events)", ["transport", "endpoint"],
                      can_coalesced)
