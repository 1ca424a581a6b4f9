"""Small helpers that turn the gateway's plain counters into Prometheus metric families at scrape time."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from bessgw.timing import DurationHistogram


def gauge(name: str, documentation: str, labels: Sequence[str] = (),
          samples: Iterable[tuple[Sequence[str], float]] = ()) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def counter(name: str, documentation: str, labels: Sequence[str] = (),
            samples: Iterable[tuple[Sequence[str], float]] = ()) -> CounterMetricFamily:
    """``name`` without ``_total`` (prometheus-client appends it)."""
    family = CounterMetricFamily(name, documentation, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              samples: Iterable[tuple[Sequence[str], DurationHistogram]] = ()) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=list(labels))
    for values, hist in samples:
        family.add_metric(list(values), hist.cumulative(), hist.sum_s)
    return family
