"""The hand-rendered Prometheus text exposition: parsed back by prometheus-client's own parser, and by promtool."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bessgw.northbound.http.families import Registry, counter, gauge, histogram
from bessgw.timing import DurationHistogram


class Fixed:
    def __init__(self, *families) -> None:
        self.families = families

    def collect(self):
        yield from self.families


def scrape() -> bytes:
    hist = DurationHistogram()
    for sample in (0.0002, 0.004, 0.004, 30.0):
        hist.observe(sample)
    return Registry([Fixed(
        gauge("bessgw_unit_active_power_watts", "Measured active power\nback\\slash", ["unit"],
              [(("U1",), 100000.0), (('we"ird\\uni\nt',), -2.5)]),
        gauge("bessgw_control_running", "1 while control runs", [], [((), 1)]),
        gauge("bessgw_odd_values", "Not finite", ["kind"], [(("nan",), math.nan), (("inf",), math.inf),
                                                            (("minf",), -math.inf)]),
        counter("bessgw_transport_requests", "Requests", ["transport", "endpoint"], [(("modbus", "h:502"), 7)]),
        histogram("bessgw_transport_request_duration_seconds", "Latency", ["transport"], [(("modbus",), hist)]),
    )]).render()


def test_the_exposition_parses_back_to_the_same_samples() -> None:
    families = {f.name: f for f in text_string_to_metric_families(scrape().decode())}
    power = {s.labels["unit"]: s.value for s in families["bessgw_unit_active_power_watts"].samples}
    assert power == {"U1": 100000.0, 'we"ird\\uni\nt': -2.5}
    assert families["bessgw_unit_active_power_watts"].documentation == "Measured active power\nback\\slash"
    assert families["bessgw_control_running"].samples[0].value == 1.0
    odd = {s.labels["kind"]: s.value for s in families["bessgw_odd_values"].samples}
    assert math.isnan(odd["nan"]) and odd["inf"] == math.inf and odd["minf"] == -math.inf
    (requests,) = families["bessgw_transport_requests"].samples
    assert (requests.name, requests.labels, requests.value) == (
        "bessgw_transport_requests_total", {"transport": "modbus", "endpoint": "h:502"}, 7.0)
    latency = families["bessgw_transport_request_duration_seconds"]
    assert latency.type == "histogram"
    buckets = {s.labels["le"]: s.value for s in latency.samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1.0 and buckets["0.005"] == 3.0 and buckets["10.0"] == 3.0 and buckets["+Inf"] == 4.0
    totals = {s.name: s.value for s in latency.samples if not s.name.endswith("_bucket")}
    assert totals["bessgw_transport_request_duration_seconds_count"] == 4.0
    assert totals["bessgw_transport_request_duration_seconds_sum"] == pytest.approx(30.0082)


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian's prometheus)")
def test_promtool_accepts_the_exposition() -> None:
    result = subprocess.run(["promtool", "check", "metrics"], input=scrape(), capture_output=True, timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")


def test_merged_histogram_sums_the_endpoints_and_skips_other_bounds() -> None:
    a, b, other = DurationHistogram(), DurationHistogram(), DurationHistogram((1.0,))
    a.observe(0.001)
    b.observe(2.0)
    other.observe(0.5)
    merged = DurationHistogram.merged([a, b, other])
    assert (merged.count, merged.sum_s) == (2, pytest.approx(2.001))
    assert dict(merged.cumulative())["0.001"] == 1 and dict(merged.cumulative())["+Inf"] == 2
