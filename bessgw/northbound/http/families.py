"""Metric families built at scrape time, and their Prometheus text exposition (format 0.0.4), rendered here.

Why not prometheus-client's ``generate_latest``: at 200 units and 200 Modbus endpoints a scrape holds
several thousand samples, and the library builds a ``Sample`` tuple per sample, validates and escapes every
label name of every sample, and sorts the labels each time — tens of milliseconds of the event loop per
scrape. Here a family keeps plain ``(label values, value)`` rows; label names are ours (fixed identifiers,
escaped never), label values are escaped only when they hold ``\\``, ``"`` or a newline, and each distinct
label set is rendered once and kept across scrapes. The output is the same text format (``promtool check
metrics`` accepts it); counters get their ``_total`` suffix, histograms their ``_bucket``/``_count``/``_sum``
lines.

Why the big collectors (units, transport endpoints) hand in **lines** rather than rows: a scrape's cost on
the event loop was dominated by the garbage collector, not by formatting. Thousands of ``(labels, value)``
tuples alive at once during a scrape pushed CPython's generation-0 counter over its threshold several times
per scrape, and every few dozen scrapes one of those escalated to a full collection (16 ms in the bench,
more in a gateway with a big heap): that was the scrape's p99. Strings are not tracked by the collector, so a
family whose samples are already rendered text (``{unit="U1"} 2500.0\n``, label text from a
:class:`LabelText` cache) allocates nothing that the collector counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bessgw.timing import DurationHistogram

#: what the HTTP server answers /metrics with (the classic text format)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Row = tuple[Sequence[str], float]

#: the registry's own family: how long its renders take
RENDER_DURATION = "bessgw_metrics_render_duration_seconds"

#: integers below this render exactly as ``repr(float(n))`` does (``7`` → ``7.0``) without the float
_EXACT_INT = 2**53


@dataclass
class Family:
    """One metric family: name (counters without ``_total``), type, help, label names and rows.

    ``lines`` are samples already rendered after the name: ``{labels} value\n`` each (see :func:`sample`);
    they follow the rows (the label names are then documentation only: the text holds them).
    """

    name: str
    type: str  # "gauge", "counter" or "histogram"
    documentation: str
    labels: Sequence[str] = ()
    rows: list[Row] = field(default_factory=list)
    histograms: list[tuple[Sequence[str], DurationHistogram]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


class Collector(Protocol):
    """Reads what the gateway keeps anyway and turns it into families, at scrape time only."""

    def collect(self) -> Iterator[Family]: ...


def gauge(name: str, documentation: str, labels: Sequence[str] = (), samples: Iterable[Row] = (),
          *, lines: list[str] | None = None) -> Family:
    return Family(name, "gauge", documentation, labels, list(samples), lines=lines if lines is not None else [])


def counter(name: str, documentation: str, labels: Sequence[str] = (), samples: Iterable[Row] = (),
            *, lines: list[str] | None = None) -> Family:
    """``name`` without ``_total`` (the exposition appends it)."""
    return Family(name, "counter", documentation, labels, list(samples), lines=lines if lines is not None else [])


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              samples: Iterable[tuple[Sequence[str], DurationHistogram]] = ()) -> Family:
    return Family(name, "histogram", documentation, labels, histograms=list(samples))


class LabelText:
    """Rendered label sets for fixed label names, kept across scrapes: ``LabelText("unit")("U1")`` →
    ``{unit="U1"}``. Label values come from config (unit ids, endpoints), so the cache stays small; it is
    emptied should it ever pass ``max_entries`` (a bound, not an expected case)."""

    __slots__ = ("_cache", "_names", "max_entries")

    def __init__(self, *names: str, max_entries: int = 100_000) -> None:
        self._names = names
        self._cache: dict[tuple[str, ...], str] = {}
        self.max_entries = max_entries

    def __call__(self, *values: str) -> str:
        text = self._cache.get(values)
        if text is None:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            text = self._cache[values] = _label_text(self._names, values)
        return text


def sample(labels: str, value: float) -> str:
    """One rendered sample line after the metric name: ``labels`` from :class:`LabelText`, then the value."""
    return f"{labels} {number(value)}\n"


class Registry:
    """The collectors of one HTTP listener (a reload or a test builds a fresh one); renders the scrape.

    It times its own renders (the event-loop time of a scrape: rendering never awaits) and exports them as
    ``bessgw_metrics_render_duration_seconds`` (the renders before this one), so the cost of being scraped
    is itself observable.
    """

    def __init__(self, collectors: Iterable[Collector]) -> None:
        self.collectors = list(collectors)
        #: label text of the row-based families, kept across scrapes (bounded like :class:`LabelText`)
        self._label_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        self.render_duration = DurationHistogram()
        #: the latest render's duration and this thread's CPU time in it, in seconds (the HTTP handler reports
        #: both as Server-Timing; a gap between them is the loop's thread waiting for a core)
        self.last_render_s = 0.0
        self.last_render_cpu_s = 0.0

    def collect(self) -> Iterator[Family]:
        for collector in self.collectors:
            yield from collector.collect()

    def render(self) -> bytes:
        """The whole scrape in the Prometheus text format."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        out: list[str] = []
        if len(self._label_cache) >= 100_000:
            self._label_cache.clear()
        for family in self.collect():
            _render(family, out, self._label_cache)
        _render(histogram(RENDER_DURATION, "Time a /metrics render took on the event loop (earlier scrapes)",
                          [], [((), self.render_duration)]), out, self._label_cache)
        body = "".join(out).encode("utf-8")
        self.last_render_s = time.perf_counter() - started
        self.last_render_cpu_s = time.thread_time() - started_cpu
        self.render_duration.observe(self.last_render_s)
        return body


def _render(family: Family, out: list[str], cache: dict[tuple[tuple[str, ...], tuple[str, ...]], str]) -> None:
    name = family.name + "_total" if family.type == "counter" else family.name
    documentation = family.documentation.replace("\\", r"\\").replace("\n", r"\n")
    out.append(f"# HELP {name} {documentation}\n# TYPE {name} {family.type}\n")
    names = tuple(family.labels)
    for values, value in family.rows:
        out.append(f"{name}{_labels(names, tuple(values), cache)} {number(value)}\n")
    if family.lines:  # name + line1 + name + line2 ... without a string per line
        out.append(name)
        out.append(name.join(family.lines))
    if not family.histograms:
        return
    bucket_names = (*names, "le")
    for values, hist in family.histograms:
        values = tuple(values)
        for le, count in hist.cumulative():
            out.append(f"{name}_bucket{_labels(bucket_names, (*values, le), cache)} {count}.0\n")
        labels = _labels(names, values, cache)
        out.append(f"{name}_count{labels} {hist.count}.0\n{name}_sum{labels} {number(hist.sum_s)}\n")


def _labels(names: tuple[str, ...], values: tuple[str, ...], cache: dict) -> str:
    key = (names, values)
    text = cache.get(key)
    if text is None:
        text = cache[key] = _label_text(names, values)
    return text


def _label_text(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    return value


def number(value: float) -> str:
    """A sample value as the exposition writes it (``repr`` of the float; ``NaN``, ``+Inf``, ``-Inf``)."""
    if type(value) is int and -_EXACT_INT < value < _EXACT_INT:
        return f"{value}.0"
    value = float(value)
    if math.isfinite(value):
        return repr(value)
    if math.isnan(value):
        return "NaN"
    return "+Inf" if value > 0 else "-Inf"
