"""The unit and transport collectors render text lines with caches kept across scrapes: what they export must
follow every change (new telemetry, new limits, another quality, a tripped breaker), parse back with
prometheus-client's parser, and escape odd label values like the row-based families do."""

from __future__ import annotations

import math
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from bessgw.daemon.transport_metrics import TransportCollector
from bessgw.model import EffectiveLimits, Quality, Telemetry, UnitState
from bessgw.northbound.http.families import Registry
from bessgw.northbound.http.metrics import UnitCollector
from bessgw.southbound.modbus.breaker import CircuitBreaker
from bessgw.southbound.modbus.endpoint import EndpointStats
from bessgw.timing import DurationHistogram
from bessgw.unit.snapshot import UnitSnapshot

NOW = 1_700_000_000.0


def snapshot(unit_id: str, p_kw: float = 100.0, quality: Quality = Quality.GOOD, max_charge_kw: float = 2500.0,
             limits: bool = True, soc_pct: float = 55.0) -> UnitSnapshot:
    telemetry = Telemetry(unit_id, NOW - 0.5, quality, UnitState.RUNNING, soc_pct=soc_pct, p_kw=p_kw, q_kvar=0.0)
    effective = EffectiveLimits(max_charge_kw, 2500.0, 1000.0, 5.0, 95.0, 500.0, -10.0, 45.0) if limits else None
    return UnitSnapshot(unit_id, telemetry, None, effective, "", True)


def samples(registry: Registry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = registry.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_unit_lines_follow_every_change_across_scrapes() -> None:
    snaps = [snapshot("U1"), snapshot('we"ird\\uni\nt', p_kw=-2.5)]
    registry = Registry([UnitCollector(lambda: snaps, clock=lambda: NOW)])
    first = samples(registry)
    assert first[("bessgw_unit_active_power_watts", (("unit", "U1"),))] == 100_000.0
    assert first[("bessgw_unit_active_power_watts", (("unit", 'we"ird\\uni\nt'),))] == -2500.0
    assert first[("bessgw_unit_max_charge_watts", (("unit", "U1"),))] == 2_500_000.0
    assert first[("bessgw_unit_quality", (("quality", "good"), ("unit", "U1")))] == 1.0
    assert first[("bessgw_unit_quality", (("quality", "stale"), ("unit", "U1")))] == 0.0
    assert first[("bessgw_unit_data_age_seconds", (("unit", "U1"),))] == 0.5

    snaps[0] = snapshot("U1", p_kw=7.0, quality=Quality.STALE, max_charge_kw=1200.0, soc_pct=math.nan)
    snaps[1] = snapshot('we"ird\\uni\nt', limits=False)
    second = samples(registry)
    assert second[("bessgw_unit_active_power_watts", (("unit", "U1"),))] == 7000.0
    assert second[("bessgw_unit_max_charge_watts", (("unit", "U1"),))] == 1_200_000.0
    assert ("bessgw_unit_max_charge_watts", (("unit", 'we"ird\\uni\nt'),)) not in second
    assert ("bessgw_unit_state_of_charge_ratio", (("unit", "U1"),)) not in second  # NaN is left out
    assert second[("bessgw_unit_quality", (("quality", "good"), ("unit", "U1")))] == 0.0
    assert second[("bessgw_unit_quality", (("quality", "stale"), ("unit", "U1")))] == 1.0
    assert sum(v for (name, labels), v in second.items()
               if name == "bessgw_unit_quality" and ("unit", "U1") in labels) == 1.0


def modbus(breaker: CircuitBreaker, stats: EndpointStats) -> SimpleNamespace:
    latency = DurationHistogram()
    latency.observe(0.004)
    endpoint = SimpleNamespace(name="127.0.0.1:1502", stats=stats, breaker=breaker, latency=latency)
    return SimpleNamespace(name="modbus", endpoints={0: endpoint})


def test_transport_lines_follow_counters_and_breaker_state() -> None:
    breaker, stats = CircuitBreaker(1, 10.0), EndpointStats(requests=10, timeouts=2, undecodable=4, late_answers=5)
    registry = Registry([TransportCollector(lambda: [modbus(breaker, stats)])])
    labels = (("endpoint", "127.0.0.1:1502"), ("transport", "modbus"))
    first = samples(registry)
    assert first[("bessgw_transport_requests_total", labels)] == 10.0
    assert first[("bessgw_transport_results_total", (*labels[:1], ("result", "ok"), labels[1]))] == 8.0
    assert first[("bessgw_transport_results_total", (*labels[:1], ("result", "timeout"), labels[1]))] == 2.0
    assert first[("bessgw_transport_breaker_state", (*labels[:1], ("state", "closed"), labels[1]))] == 1.0
    assert first[("bessgw_transport_undecodable_responses_total", labels)] == 4.0
    assert first[("bessgw_transport_late_answers_total", labels)] == 5.0

    stats.requests, stats.timeouts = 2**60, 3  # beyond a float's exact integers: rendered as the float is
    breaker.record_failure()
    second = samples(registry)
    assert second[("bessgw_transport_requests_total", labels)] == float(2**60)
    assert second[("bessgw_transport_results_total", (*labels[:1], ("result", "timeout"), labels[1]))] == 3.0
    assert second[("bessgw_transport_breaker_state", (*labels[:1], ("state", "open"), labels[1]))] == 1.0
    assert second[("bessgw_transport_breaker_state", (*labels[:1], ("state", "closed"), labels[1]))] == 0.0
    assert second[("bessgw_transport_breaker_trips_total", labels)] == 1.0


def test_the_registry_exports_its_own_render_time() -> None:
    registry = Registry([UnitCollector(lambda: [snapshot("U1")], clock=lambda: NOW)])
    registry.render()
    assert registry.last_render_s > 0
    after = samples(registry)
    assert after[("bessgw_metrics_render_duration_seconds_count", ())] == 1.0
    assert after[("bessgw_metrics_render_duration_seconds_sum", ())] > 0


def test_can_lines_count_coalesced_telemetry_frames_per_bus() -> None:
    from bessgw.southbound.can.bus import CanBusStats

    stats = CanBusStats(frames_rx=100, frames_coalesced=40, error_frames=1)
    can = SimpleNamespace(name="can", bus_stats=lambda: {"virtual:bench": stats})
    registry = Registry([TransportCollector(lambda: [can])])
    labels = (("endpoint", "virtual:bench"), ("transport", "can"))
    first = samples(registry)
    assert first[("bessgw_can_frames_coalesced_total", labels)] == 40.0
    assert first[("bessgw_can_frames_total", (("direction", "rx"), *labels))] == 100.0
    stats.frames_coalesced = 41
    assert samples(registry)[("bessgw_can_frames_coalesced_total", labels)] == 41.0
