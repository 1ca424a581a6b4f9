"""Read planning for the Modbus transport: every wanted register covered, in the fewest requests."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bessgw.plugin import RegisterSpan
from bessgw.southbound.modbus.coalesce import plan_reads


def covered(requests):
    return {a for r in requests for a in range(r.address, r.end)}


def test_touching_and_overlapping_spans_merge():
    spans = [RegisterSpan(100, 2), RegisterSpan(102, 4), RegisterSpan(104, 10), RegisterSpan(0, 34)]
    assert plan_reads(spans) == [RegisterSpan(0, 34), RegisterSpan(100, 14)]


def test_gaps_are_read_through_only_when_allowed():
    spans = [RegisterSpan(0, 10), RegisterSpan(13, 2)]
    assert plan_reads(spans) == spans
    assert plan_reads(spans, max_gap=3) == [RegisterSpan(0, 15)]


def test_requests_never_exceed_the_limit_and_values_are_not_torn():
    assert plan_reads([RegisterSpan(0, 300)]) == [RegisterSpan(0, 125), RegisterSpan(125, 125),
                                                   RegisterSpan(250, 50)]
    assert plan_reads([RegisterSpan(0, 100), RegisterSpan(90, 40)]) == [RegisterSpan(0, 100),
                                                                        RegisterSpan(100, 30)]
    with pytest.raises(ValueError, match=r"1\.\.125"):
        plan_reads([RegisterSpan(0, 1)], max_registers=126)


@given(st.lists(st.tuples(st.integers(0, 2000), st.integers(1, 200)), min_size=1, max_size=30),
       st.integers(1, 125), st.integers(0, 10))
def test_plans_cover_everything_within_limits(raw, limit, gap):
    spans = [RegisterSpan(a, c) for a, c in raw]
    requests = plan_reads(spans, limit, gap)
    assert covered(spans) <= covered(requests)
    assert all(1 <= r.count <= limit for r in requests)
    assert all(a.end <= b.address for a, b in itertools.pairwise(requests))  # ordered, disjoint
    # merging never costs a request: at most one per span (plus the splits of over-long spans)
    assert len(requests) <= sum(-(-c // limit) for _, c in raw)
