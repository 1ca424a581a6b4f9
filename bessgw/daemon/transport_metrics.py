"""Prometheus metrics of the southbound transports, read from their own counters at scrape time.

Lives in the daemon because only the daemon holds the transports (upper layers never see them); the
HTTP server gets this collector like any other. Labels: ``transport`` and ``endpoint`` (``host:port`` of
a Modbus device, ``interface:channel`` of a CAN bus, the URL of an OPC UA server) — all from config.

The request latency is one histogram per transport, merged over its endpoints at scrape time: per
endpoint it would be 17 series each (two thirds of a 200-endpoint scrape), and a slow device shows in its
own timeouts and breaker anyway.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bessgw.northbound.http.families import Family, counter, gauge, histogram
from bessgw.timing import DurationHistogram

_BREAKER_STATES = ("closed", "open", "half_open")


class TransportCollector:
    """Requests, results, latency, breaker state and reconnects per endpoint; CAN frames and bus-off."""

    def __init__(self, transports: Callable[[], Iterable[Any]]) -> None:
        self._transports = transports

    def collect(self) -> Iterator[Family]:
        requests, results, reconnects, connect_failures, breaker, trips, latency = [], [], [], [], [], [], []
        can_frames, can_errors, can_bus_off, can_opens = [], [], [], []
        for transport in self._transports():
            name = transport.name
            if name == "modbus":
                endpoints = list(transport.endpoints.values())
                latency.append(((name,), DurationHistogram.merged(endpoint.latency for endpoint in endpoints)))
                for endpoint in endpoints:
                    labels = (name, endpoint.name)
                    stats = endpoint.stats
                    requests.append((labels, stats.requests))
                    answered = stats.requests - stats.timeouts - stats.failures - stats.exception_responses
                    for result, n in (("ok", max(0, answered)), ("timeout", stats.timeouts),
                                      ("error", stats.failures), ("exception", stats.exception_responses),
                                      ("breaker_open", stats.breaker_rejections)):
                        results.append(((*labels, result), n))
                    reconnects.append((labels, stats.connects))
                    connect_failures.append((labels, stats.connect_failures))
                    state = endpoint.breaker.state.value
                    for candidate in _BREAKER_STATES:
                        breaker.append(((*labels, candidate), 1.0 if candidate == state else 0.0))
                    trips.append((labels, endpoint.breaker.trips))
            elif name == "can":
                for bus_name, stats in transport.bus_stats().items():
                    labels = (name, bus_name)
                    can_frames.append(((*labels, "rx"), stats.frames_rx))
                    can_frames.append(((*labels, "tx"), stats.frames_tx))
                    can_errors.append((labels, stats.error_frames))
                    can_bus_off.append((labels, stats.bus_off))
                    can_opens.append((labels, stats.opens))
                    results.append(((*labels, "tx_error"), stats.tx_errors))
            elif name == "opcua":
                for endpoint in list(transport.endpoints.values()):
                    labels = (name, endpoint.key.url)
                    reconnects.append((labels, endpoint.connects))
                    connect_failures.append((labels, endpoint.connect_failures))
                    requests.append((labels, endpoint.reads))
                    results.append(((*labels, "handler_error"), endpoint.handler_errors))
        yield counter("bessgw_transport_requests", "Requests sent to devices", ["transport", "endpoint"], requests)
        yield counter("bessgw_transport_results", "Request outcomes", ["transport", "endpoint", "result"], results)
        yield histogram("bessgw_transport_request_duration_seconds",
                        "Request latency, answered or not, over all endpoints of the transport", ["transport"], latency)
        yield counter("bessgw_transport_connects", "Connections (re)established", ["transport", "endpoint"],
                      reconnects)
        yield counter("bessgw_transport_connect_failures", "Failed connection attempts", ["transport", "endpoint"],
                      connect_failures)
        yield gauge("bessgw_transport_breaker_state", "1 for the circuit breaker's current state",
                    ["transport", "endpoint", "state"], breaker)
        yield counter("bessgw_transport_breaker_trips", "Times the circuit breaker opened", ["transport", "endpoint"],
                      trips)
        yield counter("bessgw_can_frames", "CAN frames by direction", ["transport", "endpoint", "direction"],
                      can_frames)
        yield counter("bessgw_can_error_frames", "CAN error frames", ["transport", "endpoint"], can_errors)
        yield counter("bessgw_can_bus_off", "CAN bus-off events", ["transport", "endpoint"], can_bus_off)
        yield counter("bessgw_can_opens", "CAN bus (re)opens", ["transport", "endpoint"], can_opens)
