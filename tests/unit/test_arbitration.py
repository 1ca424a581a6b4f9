"""Arbitration: priority among live sources, dropping silent ones, hold then ramp to 0, stop."""

from __future__ import annotations

import math
import re
from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bessgw.config import parse_config
from bessgw.control.arbitration import Arbiter, Mode, SourcePolicy
from bessgw.control.errors import CommandRejectedError, UnknownSourceError
from bessgw.control.loop import policies_from
from bessgw.errors import ConfigError

POLICIES = [SourcePolicy("local", 300, 30.0), SourcePolicy("scada", 200, 2.0), SourcePolicy("campus", 100, 5.0)]


def arbiter(hold_s: float = 10.0) -> Arbiter:
    return Arbiter(POLICIES, hold_s=hold_s, now=0.0)


def test_highest_priority_live_source_wins_and_says_why() -> None:
    arb = arbiter()
    arb.submit("campus", 100.0, 5.0, now=0.0, command_id="c1")
    arb.submit("scada", 400.0, 0.0, now=0.0, command_id="s1")
    state = arb.decide(0.5, ramp_kw_per_s=10.0)
    assert (state.mode, state.source, state.target_p_kw, state.command_id) == (Mode.ACTIVE, "scada", 400.0, "s1")
    assert "scada" in state.reason and "priority 200" in state.reason
    assert state.live_sources == ("scada", "campus")
    arb.submit("local", -50.0, 0.0, now=1.0)
    assert arb.decide(1.0, ramp_kw_per_s=10.0).source == "local"
    arb.release("local", now=1.5)
    assert arb.decide(1.5, ramp_kw_per_s=10.0).source == "scada"


def test_a_silent_source_is_dropped_and_the_next_takes_over() -> None:
    arb = arbiter()
    arb.submit("scada", 400.0, 0.0, now=0.0)
    arb.submit("campus", 100.0, 0.0, now=0.0)
    arb.heartbeat("campus", now=1.9)
    assert arb.decide(1.9, ramp_kw_per_s=10.0).source == "scada"
    state = arb.decide(2.0, ramp_kw_per_s=10.0)  # scada's timeout is 2 s
    assert (state.source, state.target_p_kw) == ("campus", 100.0)
    assert "scada silent for 2.0 s (timeout 2 s)" in state.reason
    # a late heartbeat does not revive a dropped setpoint; a new setpoint does
    arb.heartbeat("scada", now=2.1)
    assert arb.decide(2.1, ramp_kw_per_s=10.0).source == "campus"
    arb.submit("scada", 300.0, 0.0, now=2.2)
    assert arb.decide(2.2, ramp_kw_per_s=10.0).target_p_kw == 300.0


def test_no_live_source_holds_then_ramps_to_zero_at_the_aggregate_ramp() -> None:
    arb = arbiter(hold_s=10.0)
    arb.submit("scada", 400.0, 40.0, now=0.0)
    assert arb.decide(1.0, ramp_kw_per_s=50.0).mode is Mode.ACTIVE
    # scada went silent at t = 2 (heard at 0, timeout 2 s): hold until t = 12 even though noticed later
    state = arb.decide(3.0, ramp_kw_per_s=50.0)
    assert (state.mode, state.target_p_kw, state.target_q_kvar, state.since) == (Mode.HOLD, 400.0, 40.0, 2.0)
    # the reason says until when as a person reads it: local ISO 8601 time with its offset, not an epoch
    until = re.search(r"holding the last target until (\S+):", state.reason)
    assert until and datetime.fromisoformat(until.group(1)).timestamp() == 12.0, state.reason
    assert until.group(1) == datetime.fromtimestamp(12.0).astimezone().isoformat(timespec="seconds")
    assert arb.decide(11.9, ramp_kw_per_s=50.0).mode is Mode.HOLD
    state = arb.decide(12.0, ramp_kw_per_s=50.0)
    assert (state.mode, state.target_p_kw) == (Mode.RAMP_DOWN, 400.0)
    state = arb.decide(14.0, ramp_kw_per_s=50.0)  # 2 s into the ramp at 50 kW/s
    assert state.mode is Mode.RAMP_DOWN and state.target_p_kw == pytest.approx(300.0)
    assert state.target_q_kvar == pytest.approx(30.0)  # Q scaled down with P
    state = arb.decide(19.0, ramp_kw_per_s=50.0)
    assert state.target_p_kw == pytest.approx(50.0)
    state = arb.decide(20.0, ramp_kw_per_s=50.0)  # 8 s after the hold: 400 kW at 50 kW/s reaches 0
    assert (state.mode, state.target_p_kw, state.target_q_kvar) == (Mode.IDLE, 0.0, 0.0)
    assert "ramped to 0 kW" in state.reason


@settings(max_examples=200, deadline=None)
@given(p=st.floats(-5000.0, 5000.0), ramp=st.floats(1.0, 1000.0), hold=st.floats(0.0, 20.0),
       steps=st.lists(st.floats(0.001, 3.0), min_size=1, max_size=40))
def test_ramp_down_never_exceeds_the_ramp_rate_nor_the_held_target(p, ramp, hold, steps) -> None:
    arb = Arbiter([SourcePolicy("scada", 1, 1.0)], hold_s=hold, now=0.0)
    arb.submit("scada", p, 0.0, now=0.0)
    arb.decide(0.0, ramp_kw_per_s=ramp)
    now, last = 0.0, p
    for dt in steps:
        now += dt
        state = arb.decide(now, ramp_kw_per_s=ramp)
        assert abs(state.target_p_kw) <= abs(last) + 1e-9  # never grows without a source
        assert state.target_p_kw * p >= 0.0  # never crosses 0
        ramp_start = 1.0 + hold
        expected = max(0.0, abs(p) - ramp * max(0.0, now - ramp_start))
        assert abs(state.target_p_kw) == pytest.approx(expected, abs=1e-6 * max(1.0, abs(p)))
        last = state.target_p_kw


def test_an_expired_setpoint_is_not_held() -> None:
    arb = arbiter(hold_s=10.0)
    arb.submit("local", 200.0, 0.0, now=0.0, expires_at=5.0, command_id="x")
    assert arb.decide(4.0, ramp_kw_per_s=100.0).mode is Mode.ACTIVE
    state = arb.decide(6.0, ramp_kw_per_s=100.0)  # expired at 5: ramping since then, no hold
    assert (state.mode, state.target_p_kw) == (Mode.RAMP_DOWN, pytest.approx(100.0))
    assert "setpoint x expired" in state.reason


def test_stop_ramps_to_zero_whatever_the_sources_say() -> None:
    arb = arbiter()
    arb.submit("local", -300.0, 0.0, now=0.0)
    arb.decide(0.0, ramp_kw_per_s=100.0)
    arb.stop(now=1.0)
    arb.submit("local", -500.0, 0.0, now=1.5)
    state = arb.decide(2.0, ramp_kw_per_s=100.0)
    assert (state.mode, state.target_p_kw) == (Mode.STOPPING, pytest.approx(-200.0))
    state = arb.decide(5.0, ramp_kw_per_s=100.0)
    assert (state.mode, state.target_p_kw) == (Mode.STOPPING, 0.0)


def test_infinite_ramp_drops_at_once_after_the_hold() -> None:
    arb = arbiter(hold_s=1.0)
    arb.submit("scada", 400.0, 0.0, now=0.0)
    arb.decide(0.0, ramp_kw_per_s=math.inf)
    assert arb.decide(2.5, ramp_kw_per_s=math.inf).mode is Mode.HOLD
    assert arb.decide(3.0, ramp_kw_per_s=math.inf).target_p_kw == 0.0


def test_unknown_sources_and_bad_values_are_refused() -> None:
    arb = arbiter()
    with pytest.raises(UnknownSourceError, match=r"unknown setpoint source 'opcua'.*campus, local, scada"):
        arb.submit("opcua", 1.0, 0.0, now=0.0)
    with pytest.raises(CommandRejectedError, match="not finite"):
        arb.submit("local", math.nan, 0.0, now=0.0)
    with pytest.raises(ValueError, match="at least one"):
        Arbiter([], hold_s=1.0)


def test_control_section_configures_the_sources() -> None:
    config = parse_config({"gateway": {"id": "gw1"}, "control": {
        "hold_s": 3, "sources": [{"name": "scada", "priority": 5, "heartbeat_timeout_s": 2.5},
                                 {"name": "local", "priority": 9, "heartbeat_timeout_s": 60}]}})
    assert policies_from(config.control) == [SourcePolicy("scada", 5, 2.5), SourcePolicy("local", 9, 60.0)]
    assert config.control.hold_s == 3.0 and config.control.ramp_to_zero_on_stop is True
    defaults = parse_config({"gateway": {"id": "gw1"}}).control  # [control] is optional
    assert {p.name for p in policies_from(defaults)} == {"local", "scada", "campus"}


def test_control_section_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"gateway": {"id": "gw1"}, "control": {"sources": [
            {"name": "scada", "priority": 1, "heartbeat_timeout_s": 1},
            {"name": "scada", "priority": 2, "heartbeat_timeout_s": 1}]}}, "site.toml")
    assert "site.toml: control.sources: Value error, source 'scada' is used by sources[0] and sources[1]" in str(
        err.value)
    with pytest.raises(ConfigError, match=r"control\.period_s: Input should be greater than 0"):
        parse_config({"gateway": {"id": "gw1"}, "control": {"period_s": 0}}, "site.toml")


def test_a_zero_on_loss_source_is_never_held() -> None:
    """A campus share lost (fence passed, released) drops to 0 kW at once: another gateway may take it."""
    arbiter = Arbiter([SourcePolicy("campus", 100, 5.0, on_loss="zero")], hold_s=10.0, now=0.0)
    arbiter.submit("campus", 400.0, 50.0, now=0.0)
    assert arbiter.decide(1.0, ramp_kw_per_s=1.0).target_p_kw == 400.0
    arbiter.release("campus", now=2.0)
    state = arbiter.decide(2.0, ramp_kw_per_s=1.0)
    assert (state.mode, state.target_p_kw, state.target_q_kvar) == (Mode.IDLE, 0.0, 0.0)
    arbiter.submit("campus", 300.0, 0.0, now=3.0, expires_at=4.0)
    assert arbiter.decide(3.5, ramp_kw_per_s=1.0).target_p_kw == 300.0
    assert arbiter.decide(4.0, ramp_kw_per_s=1.0).target_p_kw == 0.0  # at its expiry, not after a hold or ramp
