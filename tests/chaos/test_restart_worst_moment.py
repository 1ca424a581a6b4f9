"""kill -9 at the worst moments: right after a setpoint is acknowledged, in the middle of a reload, and while
the setpoint's source is going silent. After the restart an acknowledged command is in force again, a lapsed
one is not, and ``bessgw journal tail`` says which.

Real gateway subprocesses on one state directory, in-memory units of the docs example plugin.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess, bessgw_command, gateway_status, wait_admin_socket

pytestmark = [pytest.mark.chaos, pytest.mark.daemon]

CONFIG = """
[gateway]
id = "gw-worst"
state_dir = "{state}"
log_format = "json"
telemetry_log_interval_s = {telemetry_s}

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05
hold_s = 0.5

[[control.sources]]
name = "local"
priority = 300
heartbeat_timeout_s = {timeout_s}

[[units]]
id = "m1"
driver = "in_memory"
[units.options]
power_kw = 500
soc_pct = 60
"""


def write_config(tmp_path: Path, timeout_s: float, telemetry_s: float = 0.1) -> Path:
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state", timeout_s=timeout_s, telemetry_s=telemetry_s),
                      encoding="utf-8")
    return config


def start(tmp_path: Path, env: dict[str, str], name: str) -> GatewayProcess:
    run_dir = tmp_path / name
    run_dir.mkdir()
    gw = GatewayProcess(tmp_path / "gw.toml", env, run_dir)
    gw.wait_notify("READY", 20)
    wait_admin_socket(tmp_path / "state")
    return gw


def cli(env: dict[str, str], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), *args, "--config", str(config)], env=env, capture_output=True,
                          text=True, timeout=30)


def kill_9(gw: GatewayProcess) -> None:
    gw.signal(signal.SIGKILL)
    gw.proc.wait(10)
    gw.stop()


def wait_delivered(config: Path, env: dict[str, str], p_kw: float, timeout_s: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        control = gateway_status(config, env)["control"]
        if control["target_p_kw"] == p_kw and abs(control["delivered_p_kw"] - p_kw) < 1e-6:
            return control
        assert time.monotonic() < deadline, f"not delivering {p_kw} kW within {timeout_s} s: {control}"
        time.sleep(0.05)


@pytest.fixture
def env(subprocess_env) -> dict[str, str]:
    return dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")


def test_a_setpoint_acknowledged_just_before_kill_9_is_in_force_after_the_restart(tmp_path: Path, env) -> None:
    config = write_config(tmp_path, timeout_s=60)
    gw = start(tmp_path, env, "first")
    try:
        accepted = cli(env, config, "setpoint", "--p-kw", "250", "--id", "acked-then-killed")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        kill_9(gw)  # at once: whatever the control loop had done with it, the acknowledgement was given
    gw = start(tmp_path, env, "second")
    try:
        ready = gw.wait_log(lambda e: e.get("event") == "control_ready", 10)
        assert ready["restored"] == 1
        control = wait_delivered(config, env, 250.0)
        assert control["source"] == "local"
        tail = cli(env, config, "journal", "tail", "-n", "1")
        assert tail.returncode == 0 and "acked-then-killed: P 250 -> 250 kW" in tail.stdout, tail
    finally:
        gw.stop()


def test_kill_9_in_the_middle_of_a_reload_loses_no_acknowledged_setpoint(tmp_path: Path, env) -> None:
    config = write_config(tmp_path, timeout_s=60)
    gw = start(tmp_path, env, "first")
    try:
        assert cli(env, config, "setpoint", "--p-kw", "180", "--id", "before-reload").returncode == 0
        wait_delivered(config, env, 180.0)
        write_config(tmp_path, timeout_s=60, telemetry_s=0.2)
        gw.signal(signal.SIGHUP)
        gw.wait_notify("RELOADING")
    finally:
        kill_9(gw)
    gw = start(tmp_path, env, "second")
    try:
        assert gw.wait_log(lambda e: e.get("event") == "control_ready", 10)["restored"] == 1
        wait_delivered(config, env, 180.0)
    finally:
        gw.stop()


def test_a_setpoint_that_lapsed_while_the_gateway_was_down_is_not_applied_and_the_journal_says_so(
        tmp_path: Path, env) -> None:
    config = write_config(tmp_path, timeout_s=2.0)
    gw = start(tmp_path, env, "first")
    try:
        assert cli(env, config, "setpoint", "--p-kw", "300", "--id", "lapsed-while-down").returncode == 0
    finally:
        kill_9(gw)
    time.sleep(2.5)  # the gateway is down past the source's heartbeat timeout: that is the scenario, not a wait
    gw = start(tmp_path, env, "second")
    try:
        assert gw.wait_log(lambda e: e.get("event") == "control_ready", 10)["restored"] == 0
        control = gateway_status(config, env)["control"]
        assert control["target_p_kw"] == 0.0 and control["source"] is None, control
        tail = cli(env, config, "journal", "tail", "-n", "1")
        assert tail.returncode == 0, tail.stderr
        # the last word on the command must not be "P 300 -> 300 kW" as if it were in force
        assert "lapsed-while-down#dropped" in tail.stdout, tail.stdout
    finally:
        gw.stop()
