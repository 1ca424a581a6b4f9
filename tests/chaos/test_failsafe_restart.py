"""Finding 12.1: a setpoint the fail-safe dropped never comes back — not after kill -9, not after a reload.

A local setpoint whose source then goes silent is held, ramped to 0 and dropped by the fail-safe. The
gateway is then killed with SIGKILL and restarted on the same state dir (or reloaded with a changed unit
list): the restored control plane must not drive the units back to the old setpoint, not even briefly.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess, bessgw_command

pytestmark = [pytest.mark.chaos, pytest.mark.daemon]

CONFIG = """
[gateway]
id = "gw-failsafe"
state_dir = "{state}"
log_format = "json"
telemetry_log_interval_s = 0.1
shutdown_grace_s = 4

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05
hold_s = 0.5
stop_timeout_s = 2.0
[[control.sources]]
name = "local"
priority = 300
heartbeat_timeout_s = 1.5

[[units]]
id = "m1"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 60

[[units]]
id = "m2"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 50
{extra}
"""

EXTRA_UNIT = """
[[units]]
id = "m3"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 55
"""


def _start(tmp_path: Path, env: dict[str, str], name: str) -> GatewayProcess:
    notify = tmp_path / name
    notify.mkdir()
    gw = GatewayProcess(tmp_path / "gw.toml", env, notify)
    gw.wait_notify("READY", timeout_s=30)
    return gw


def _drive_then_drop(gw: GatewayProcess, config: Path, env: dict[str, str]) -> None:
    import subprocess

    done = subprocess.run([*bessgw_command(), "setpoint", "--config", str(config), "--p-kw", "700", "--id", "s-700"],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "m1" and e["p_kw"] > 300.0, 10)
    # the CLI is gone: the local source goes silent, the fail-safe holds, ramps to 0 and drops it
    dropped = gw.wait_log(lambda e: e.get("event") == "setpoint_dropped" and e.get("command_id") == "s-700", 15)
    # then the units ramp to 0 kW: wait for that *after* the drop (wait_log also sees the start-up's 0 kW lines)
    after = gw.log_lines.index(dropped)
    for unit in ("m1", "m2"):
        gw.wait_log(lambda e, unit=unit: e.get("event") == "telemetry" and e.get("unit") == unit
                    and e["p_kw"] == 0.0 and gw.log_lines.index(e) > after, 15)


def _no_power_for(gw: GatewayProcess, seconds: float) -> list[float]:
    """Every unit's power as logged over ``seconds`` (the scenario's observation window)."""
    start = len(gw.log_lines)
    deadline = time.monotonic() + seconds
    with gw._lock:
        while time.monotonic() < deadline:
            gw._lock.wait(deadline - time.monotonic())
        lines = gw.log_lines[start:]
    return [e["p_kw"] for e in lines if e.get("event") == "telemetry"]


def test_a_dropped_setpoint_does_not_come_back_after_kill_9(tmp_path: Path, subprocess_env) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", extra=""))
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    gw = _start(tmp_path, env, "first")
    try:
        _drive_then_drop(gw, config, env)
        gw.signal(signal.SIGKILL)
        gw.proc.wait(10)
    finally:
        gw.stop()
    gw = _start(tmp_path, env, "second")
    try:
        ready = gw.wait_log(lambda e: e.get("event") == "control_ready", 10)
        assert ready["restored"] == 0
        powers = _no_power_for(gw, 2.0)
        assert powers and max(abs(p) for p in powers) == 0.0, f"the dropped setpoint came back: {max(powers)} kW"
    finally:
        gw.stop()


def test_a_dropped_setpoint_does_not_come_back_after_a_reload_that_changes_the_units(tmp_path: Path,
                                                                                     subprocess_env) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", extra=""))
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    gw = _start(tmp_path, env, "only")
    try:
        _drive_then_drop(gw, config, env)
        config.write_text(CONFIG.format(state=tmp_path / "state", extra=EXTRA_UNIT))
        seen = len(gw.log_lines)
        gw.signal(signal.SIGHUP)
        gw.wait_log(lambda e: e.get("event") == "reloaded", 15)
        ready = [e for e in gw.log_lines[seen:] if e.get("event") == "control_ready"]
        assert ready and ready[-1]["restored"] == 0 and ready[-1]["units"] == 3
        powers = _no_power_for(gw, 2.0)
        assert powers and max(abs(p) for p in powers) == 0.0, f"the dropped setpoint came back: {max(powers)} kW"
    finally:
        gw.stop()
