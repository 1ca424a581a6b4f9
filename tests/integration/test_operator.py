"""The local operator path end to end: `bessgw setpoint` → admin socket → control → journal → units.

Real gateway subprocesses, in-memory units (the docs example plugin), real CLI calls.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shlex
import signal
import subprocess
from datetime import datetime
from pathlib import Path

import pytest

from bessgw.testing.wait import wait_until_sync
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


def test_status_into_a_closed_pipe_ends_quietly_with_0(gateway) -> None:
    _gw, config, env = gateway
    shell = subprocess.run(["bash", "-o", "pipefail", "-c", f"{shlex.join(bessgw_command())} status --config "
                            f"{shlex.quote(str(config))} | head -1"], env=env, capture_output=True, text=True,
                           timeout=30)
    assert shell.returncode == 0 and shell.stdout.startswith("gateway gw-op "), shell
    assert "Traceback" not in shell.stderr and "Error" not in shell.stderr, shell.stderr
    # the same, deterministic: the reader is gone before bessgw writes a byte (what `head` does to a long table)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        closed = subprocess.run([*bessgw_command(), "status", "--config", str(config)], env=env, stdout=write_end,
                                stderr=subprocess.PIPE, text=True, timeout=30)
    finally:
        os.close(write_end)
    assert closed.returncode == 0 and closed.stderr == "", closed.stderr


def test_status_watch_refreshes_until_ctrl_c(gateway) -> None:
    _gw, config, env = gateway
    watch = subprocess.Popen([*bessgw_command(), "status", "--config", str(config), "--watch", "0.2"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        heads = []
        assert watch.stdout is not None
        wait_until_sync(lambda: (line := watch.stdout.readline()) and line.startswith("every 0.2 s")
                        and heads.append(line) is None and len(heads) >= 3, timeout_s=20, what="three reports")
        watch.send_signal(signal.SIGINT)
        assert watch.wait(timeout=10) == 0
        assert "Traceback" not in watch.stderr.read()
    finally:
        watch.kill()
        watch.wait(timeout=10)
    moments = [datetime.fromisoformat(head.split("Ctrl-C ends  ", 1)[1].strip()) for head in heads]
    assert moments == sorted(moments) and moments[0] < moments[-1]  # fresh reports, not one repeated


def test_setpoint_hold_shows_the_delivered_power_on_a_terminal_and_releases_on_ctrl_c(gateway) -> None:
    gw, config, env = gateway
    controller, terminal = pty.openpty()
    hold = subprocess.Popen([*bessgw_command(), "setpoint", "--config", str(config), "--p-kw", "300", "--hold",
                             "--heartbeat-s", "1"], env=env, stdout=terminal, stderr=subprocess.PIPE, text=True)
    os.close(terminal)
    seen = bytearray()

    def read_terminal() -> bool:
        if select.select([controller], [], [], 0.2)[0]:
            with contextlib.suppress(OSError):
                seen.extend(os.read(controller, 4096))
        return b"delivered 300.0 kW" in seen

    try:
        wait_until_sync(read_terminal, timeout_s=20, what="a status line with 300 kW delivered")
        lines = seen.decode().split("\r")
        assert any(line.startswith("\x1b[Kholding: local  target 300.0 kW  delivered 300.0 kW") for line in lines), seen
        # refreshed in place: several carriage-return updates of the one line, no new lines in between
        wait_until_sync(lambda: read_terminal() and seen.count(b"\r\x1b[Kholding:") >= 3, timeout_s=20,
                        what="three refreshes")
        assert seen.decode().count("\n") == 1, seen  # only the "accepted" line before the status line
        hold.send_signal(signal.SIGINT)
        assert hold.wait(timeout=15) == 0, hold.stderr.read()
    finally:
        hold.kill()
        hold.wait(timeout=10)
        os.close(controller)
    status = json.loads(cli(env, "status", "--config", str(config), "--json").stdout)
    assert status["control"]["source"] != "local"  # released on Ctrl-C
    assert gw.proc.poll() is None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_setpoint_hold_releases_when_it_is_terminated_or_its_session_hangs_up(gateway, sig) -> None:
    """A ``kill`` or a closed SSH session ended --hold without releasing: the override then lived on until
    the local source's heartbeat timeout."""
    gw, config, env = gateway
    hold = subprocess.Popen([*bessgw_command(), "setpoint", "--config", str(config), "--p-kw", "200", "--hold",
                             "--heartbeat-s", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_sync(lambda: json.loads(cli(env, "status", "--config", str(config), "--json").stdout)
                        ["control"]["source"] == "local", timeout_s=20, what="the held setpoint in force")
        hold.send_signal(sig)
        out, err = hold.communicate(timeout=15)
        assert hold.returncode == 0 and "released (" in out and "Traceback" not in err, (out, err)
    finally:
        hold.kill()
        hold.wait(timeout=10)
    status = json.loads(cli(env, "status", "--config", str(config), "--json").stdout)
    assert status["control"]["source"] != "local"  # released at once, not by the heartbeat timeout
    assert gw.proc.poll() is None
