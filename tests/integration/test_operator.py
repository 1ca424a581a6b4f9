"""The local operator path end to end: `bessgw setpoint` → admin socket → control → journal → units.

Real gateway subprocesses, in-memory units (the docs example plugin), real CLI calls.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess, bessgw_command

pytestmark = pytest.mark.daemon

CONFIG = """
[gateway]
id = "gw-op"
state_dir = "{state}"
log_format = "json"
telemetry_log_interval_s = 0.2
shutdown_grace_s = 6

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05
hold_s = 1.0
stop_timeout_s = 3.0

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
soc_pct = 40
"""


@pytest.fixture
def gateway(tmp_path: Path, subprocess_env: dict[str, str]):
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    process = GatewayProcess(config, env, tmp_path)
    process.wait_notify("READY")
    process.wait_log(lambda e: e.get("event") == "control_ready")
    yield process, config, env
    process.stop()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), *args], env=env, capture_output=True, text=True, timeout=30)


def unit_power(gw: GatewayProcess, unit: str, predicate) -> dict:
    return gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == unit and predicate(e["p_kw"]))


def test_setpoint_reaches_the_units_is_journaled_and_idempotent(gateway) -> None:
    gw, config, env = gateway
    first = cli(env, "setpoint", "--config", str(config), "--p-kw", "600", "--id", "op-1", "--json")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert (result["command_id"], result["source"], result["applied_p_kw"]) == ("op-1", "local", 600.0)

    # discharge is shared by SOC: the fuller unit m1 gives more than the emptier m2, together 600 kW
    m1 = unit_power(gw, "m1", lambda p: p > 0)["p_kw"]
    status = json.loads(cli(env, "status", "--config", str(config), "--json").stdout)
    assert status["control"]["source"] == "local" and status["control"]["target_p_kw"] == 600.0
    assert status["control"]["delivered_p_kw"] == pytest.approx(600.0)
    powers = {u["id"]: u["p_kw"] for u in status["units"]}
    assert powers["m1"] > powers["m2"] > 0 and m1 > 0

    again = cli(env, "setpoint", "--config", str(config), "--p-kw", "600", "--id", "op-1", "--json")
    assert json.loads(again.stdout) == result  # a retry of the same id: the first result, no second effect
    reused = cli(env, "setpoint", "--config", str(config), "--p-kw", "-100", "--id", "op-1", "--json")
    assert reused.returncode != 0 and "already used with other arguments" in reused.stderr

    tail = cli(env, "journal", "tail", "--config", str(config), "--json")
    entries = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [e["command_id"] for e in entries] == ["op-1"]
    assert entries[0]["principal"]  # the caller's user name from the socket's peer credentials


def test_bad_requests_get_clear_errors(gateway) -> None:
    gw, config, env = gateway
    bad = cli(env, "setpoint", "--config", str(config), "--p-kw", "nan")
    assert bad.returncode != 0 and "p_kw must be a finite number" in bad.stderr
    members = cli(env, "members", "--config", str(config))
    assert members.returncode != 0 and "federation is not enabled" in members.stderr
    assert gw.proc.poll() is None


def test_sigterm_ramps_to_zero_before_stopping(gateway) -> None:
    gw, config, env = gateway
    assert cli(env, "setpoint", "--config", str(config), "--p-kw", "400").returncode == 0
    unit_power(gw, "m1", lambda p: p > 0)
    gw.signal(signal.SIGTERM)
    drained = gw.wait_log(lambda e: e.get("event") == "control_drained", timeout_s=8)
    assert drained["delivered_p_kw"] == 0.0
    assert gw.proc.wait(timeout=8) == 0


def test_every_acknowledged_command_survives_kill_9(gateway) -> None:
    gw, config, env = gateway
    acknowledged = []
    for index in range(15):
        result = cli(env, "setpoint", "--config", str(config), "--p-kw", str(10 * index), "--id", f"k-{index}")
        assert result.returncode == 0, result.stderr
        acknowledged.append(f"k-{index}")
    gw.proc.kill()
    gw.proc.wait(10)
    tail = cli(env, "journal", "tail", "--config", str(config), "--json", "-n", "100")
    journaled = [json.loads(line)["command_id"] for line in tail.stdout.splitlines()]
    assert journaled == acknowledged
