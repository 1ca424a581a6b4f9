"""Metric families built at scrape time, and their Prometheus text exposition (format 0.0.4), rendered here.

Why not prometheus-client's ``generate_latest``: at 200 units and 200 Modbus endpoints a scrape holds
several thousand samples, and the library builds a ``Sample`` tuple per sample, validates and escapes every
label name of every sample, and sorts the labels each time — tens of milliseconds of the event loop per
scrape. Here a family keeps plain ``(label values, value)`` rows; label names are ours (fixed identifiers,
escaped never), label values are escaped only when they hold ``\\``, ``"`` or a newline, and each distinct
label set is rendered once per scrape. The output is the same text format (``promtool check metrics``
accepts it); counters get their ``_total`` suffix, histograms their ``_bucket``/``_count``/``_sum`` lines.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bessgw.timing import DurationHistogram

#: what the HTTP server answers /metrics with (the classic text format)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Row = tuple[Sequence[str], float]


@dataclass
class Family:
    """One metric family: name (counters without ``_total``), type, help, label names and rows."""

    name: str
    type: str  # "gauge", "counter" or "histogram"
    documentation: str
    labels: Sequence[str] = ()
    rows: list[Row] = field(default_factory=list)
    histograms: list[tuple[Sequence[str], DurationHistogram]] = field(default_factory=list)


class Collector(Protocol):
    """Reads what the gateway keeps anyway and turns it into families, at scrape time only."""

    def collect(self) -> Iterator[Family]: ...


def gauge(name: str, documentation: str, labels: Sequence[str] = (), samples: Iterable[Row] = ()) -> Family:
    return Family(name, "gauge", documentation, labels, list(samples))


def counter(name: str, documentation: str, labels: Sequence[str] = (), samples: Iterable[Row] = ()) -> Family:
    """``name`` without ``_total`` (the exposition appends it)."""
    return Family(name, "counter", documentation, labels, list(samples))


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              samples: Iterable[tuple[Sequence[str], DurationHistogram]] = ()) -> Family:
    return Family(name, "histogram", documentation, labels, histograms=list(samples))


class Registry:
    """The collectors of one HTTP listener (a reload or a test builds a fresh one); renders the scrape."""

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)

    def collect(self) -> Iterator[Family]:
        for collector in self.collectors:
            yield from collector.collect()

    def render(self) -> bytes:
        """The whole scrape in the Prometheus text format."""
        out: list[str] = []
        label_cache: dict[tuple[Sequence[str], tuple[str, ...]], str] = {}
        for family in self.collect():
            _render(family, out, label_cache)
        return "".join(out).encode("utf-8")


def _render(family: Family, out: list[str], cache: dict[tuple[Sequence[str], tuple[str, ...]], str]) -> None:
    name = family.name + "_total" if family.type == "counter" else family.name
    documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {documentation}\n# TYPE {name} {family.type}\n")
    names = tuple(family.labels)
    for values, value in family.rows:
        out.append(f"{name}{_labels(names, tuple(values), cache)} {_number(value)}\n")
    if not family.histograms:
        return
    bucket_names = (*names, "le")
    for values, hist in family.histograms:
        values = tuple(values)
        for le, count in hist.cumulative():
            out.append(f"{name}_bucket{_labels(bucket_names, (*values, le), cache)} {count}.0\n")
        labels = _labels(names, values, cache)
        out.append(f"{name}_count{labels} {hist.count}.0\n{name}_sum{labels} {_number(hist.sum_s)}\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], cache: dict) -> str:
    key = (names, values)
    text = cache.get(key)
    if text is None:
        if not names:
            text = ""
        else:
            text = "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"
        cache[key] = text
    return text


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def _number(value: float) -> str:
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"
