"""Hostile config files, as an outsider's tools write them: ``bessgw check-config`` and ``bessgw run`` answer
each with exit 78 and lines ``file: key.path: message`` (never a traceback), and a running gateway that is
sent one by SIGHUP keeps running its previous config.

Real ``bessgw`` subprocesses; the running gateway controls in-memory units of the docs example plugin.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess, bessgw_command, gateway_status, wait_admin_socket
from tests.ports import free_tcp_port

pytestmark = [pytest.mark.daemon, pytest.mark.chaos]

HEAD = """
[gateway]
id = "gw-hostile"
state_dir = "{state}"
log_format = "json"

[defaults]
poll_interval_s = 0.05

[control]
period_s = 0.05
"""

UNIT = """
[[units]]
id = "m1"
driver = "in_memory"
{extra}
[units.options]
power_kw = 500
soc_pct = 60
"""


def config_text(state: Path, unit_extra: str = "", tail: str = "") -> str:
    return HEAD.format(state=state) + UNIT.format(extra=unit_extra) + tail


@pytest.fixture(scope="module")
def env(plugin_path) -> dict[str, str]:
    env = dict(os.environ, BESSGW_PLUGINS="bessgw_example",
               PYTHONPATH=os.pathsep.join([*plugin_path, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    env.pop("NOTIFY_SOCKET", None)
    return env


def bessgw(env: dict[str, str], *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), *args], env=env, capture_output=True, text=True, timeout=timeout_s)


def assert_config_error(result: subprocess.CompletedProcess[str], path: Path, expected: str) -> None:
    """Exit 78, no traceback, every line names the file, one of them says ``expected``."""
    assert result.returncode == 78, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line]
    assert lines, result
    assert all(line.startswith(f"{path}: ") for line in lines), lines
    assert all(len(line) <= len(str(path)) + 5000 for line in lines), [line[:200] for line in lines]
    assert any(expected in line for line in lines), lines


# a unit's own timing merged over [defaults] must still be ordered; each ended in a traceback
DISORDERED_TIMING = [
    ("unit-stale-over-default-bad", "stale_after_s = 7.0", "",
     "units[0].stale_after_s: 7 s must not exceed defaults.bad_after_s (5 s)"),
    ("unit-bad-under-default-stale", "bad_after_s = 0.5", "",
     "units[0].bad_after_s: 0.5 s must not be below defaults.stale_after_s (1 s)"),
    ("unit-retry-min-over-default-max", "retry_min_s = 60.0", "",
     "units[0].retry_min_s: 60 s must not exceed defaults.retry_max_s (30 s)"),
]


@pytest.mark.parametrize(("name", "unit_extra", "tail", "expected"), DISORDERED_TIMING,
                         ids=[case[0] for case in DISORDERED_TIMING])
def test_check_config_names_the_key_without_a_traceback(tmp_path: Path, env, name, unit_extra, tail,
                                                        expected) -> None:
    path = tmp_path / f"{name}.toml"
    path.write_text(config_text(tmp_path / "state", unit_extra, tail), encoding="utf-8")
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)


MEGA = "a" * 1_000_000

# values an outsider's generator writes: each got a 1 MB error line back, or was accepted
HOSTILE_VALUES = [
    ("mega-driver", f'driver = "{MEGA}"',
     "units[0].driver: Value error, must be at most 4096 characters (this one has 1000000)"),
    ("mega-host", f'[units.modbus]\nhost = "{MEGA}"',
     "units[0].modbus.host: Value error, must be at most 4096 characters"),
    ("mega-unknown-key", f'{MEGA} = 1', f"units[0].{'a' * 61}...: unknown key"),
    ("empty-soc-window", "[units.site_limits]\nsoc_min_pct = 60.0\nsoc_max_pct = 40.0",
     "units[0].site_limits: Value error, soc_min_pct (60 %) must not exceed soc_max_pct (40 %)"),
    ("nan-deadband", "", "northbound.opcua: Value error, deadbands must be numbers >= 0"),
    # a typo in a variable name passed check-config; run then failed (or a reload stopped the OPC UA server)
    ("unknown-deadband", "", "northbound.opcua.deadbands: unknown variable(s) PowerKW (numeric variables: "),
    ("host-with-control-characters", '[units.modbus]\nhost = "a b\\u0001"',
     "units[0].modbus.host: expected a host name or an IP address (no spaces or control characters)"),
]


@pytest.mark.parametrize(("name", "unit_extra", "expected"), HOSTILE_VALUES, ids=[case[0] for case in HOSTILE_VALUES])
def test_hostile_values_get_one_short_line_naming_the_key(tmp_path: Path, env, name, unit_extra, expected) -> None:
    path = tmp_path / f"{name}.toml"
    text = config_text(tmp_path / "state", unit_extra)
    if unit_extra.startswith("driver"):
        text = text.replace('driver = "in_memory"\n', "")
    if name == "nan-deadband":
        text += "[northbound.opcua]\ndeadbands = { PowerKw = nan }\n"
    if name == "unknown-deadband":
        text += "[northbound.opcua]\ndeadbands = { PowerKW = 1.0 }\n"
    path.write_text(text, encoding="utf-8")
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)


def test_a_generated_flood_of_broken_units_gets_a_bounded_answer(tmp_path: Path, env) -> None:
    """100,000 broken units printed 200,000 error lines (pydantic validated every one of them)."""
    path = tmp_path / "flood.toml"
    path.write_text(HEAD.format(state=tmp_path / "state") + "[[units]]\nid = 5\n" * 100_000, encoding="utf-8")
    result = bessgw(env, "check-config", str(path))
    assert_config_error(result, path, "units: List should have at most 10000 items after validation, not 100000")
    assert len(result.stderr.splitlines()) == 1, result.stderr[:2000]
    path.write_text(HEAD.format(state=tmp_path / "state") + "[[units]]\nid = 5\n" * 1000, encoding="utf-8")
    result = bessgw(env, "check-config", str(path))
    assert_config_error(result, path, "units[0].id: Input should be a valid string (got 5)")
    lines = result.stderr.splitlines()
    assert len(lines) == 101 and lines[-1].endswith("... and 1900 more problems like these (fix the ones above first)")


def test_a_utf8_byte_order_mark_is_accepted_and_utf16_is_named(tmp_path: Path, env) -> None:
    """A BOM (Windows editors) read as ``line 1, column 1: TOML syntax error: Invalid statement``."""
    text = config_text(tmp_path / "state")
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    result = bessgw(env, "check-config", str(path))
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result
    path = tmp_path / "utf16.toml"
    path.write_bytes(text.encode("utf-16"))
    assert_config_error(bessgw(env, "check-config", str(path)), path, "UTF-16 text; save the file as UTF-8")


@pytest.mark.parametrize(("tail", "expected"), [
    (f'[plugins]\n"{MEGA}" = {{}}\n', f"plugins.{'a' * 61}...: no installed driver is called 'aaaa"),
    (f'[northbound.opcua]\ndeadbands = {{ "{MEGA}" = 1.0 }}\n',
     "northbound.opcua.deadbands.aaaa"),
], ids=["mega-plugin-name", "mega-deadband-name"])
def test_hostile_table_keys_get_one_short_line(tmp_path: Path, env, tail: str, expected: str) -> None:
    """A 1 MB plugin table name came back in a 2 MB error line; a 1 MB deadband name was accepted."""
    path = tmp_path / "gw.toml"
    path.write_text(config_text(tmp_path / "state", tail=tail), encoding="utf-8")
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)


def test_run_refuses_a_disordered_unit_timing_with_78_and_starts_nothing(tmp_path: Path, env) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(config_text(tmp_path / "state", "stale_after_s = 7.0"), encoding="utf-8")
    result = bessgw(env, "run", "--config", str(path))
    assert_config_error(result, path, "units[0].stale_after_s: 7 s must not exceed defaults.bad_after_s (5 s)")
    assert not (tmp_path / "state" / "admin.sock").exists()


def test_run_refuses_a_busy_http_port_before_starting_any_unit(tmp_path: Path, env) -> None:
    """The HTTP listener's port was not probed: check-config said ok, and run started the units, the control
    loop and the admin socket before failing on it with ``http: cannot start: OSError ...``."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", free_tcp_port()))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "gw.toml"
        path.write_text(config_text(tmp_path / "state", tail=f'[http]\nlisten = "127.0.0.1:{port}"\n'),
                        encoding="utf-8")
        expected = f"http.listen: TCP 127.0.0.1:{port} is in use by another process"
        assert_config_error(bessgw(env, "check-config", str(path)), path, expected)
        result = bessgw(env, "run", "--config", str(path))
    assert_config_error(result, path, expected)
    assert "unit_started" not in result.stdout, result.stdout
    assert not (tmp_path / "state" / "admin.sock").exists()


@pytest.mark.parametrize(("table", "expected"), [
    ('[federation]\nbind_host = "192.0.2.1"\nbind_port = 0\nkeys = ["{key}"]\n',
     "federation.bind_host: '192.0.2.1' is not an address of this machine"),
    ('[http]\nlisten = "192.0.2.1:0"\n',
     "http.listen: '192.0.2.1' is not an address of this machine"),
], ids=["federation-foreign-address", "http-foreign-address"])
def test_run_refuses_a_listen_host_it_cannot_bind_even_on_port_0(tmp_path: Path, env, table, expected) -> None:
    """Port 0 (any free port) skipped the probe: check-config said ok, and run started the units before failing
    on the federation (``federation: cannot start: ...``, with bind_host = "/" a gaierror)."""
    path = tmp_path / "gw.toml"
    key = base64.b64encode(b"k" * 32).decode()
    path.write_text(config_text(tmp_path / "state", tail=table.format(key=key)), encoding="utf-8")
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)
    result = bessgw(env, "run", "--config", str(path))
    assert_config_error(result, path, expected)
    assert "unit_started" not in result.stdout, result.stdout


def test_a_journal_file_that_is_not_a_database_is_a_config_error_before_start(tmp_path: Path, env) -> None:
    """check-config said ok, and run stopped with 'cannot open the command journal: file is not a database'
    (exit 70)."""
    path = tmp_path / "gw.toml"
    path.write_text(config_text(tmp_path / "state"), encoding="utf-8")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "commands.sqlite3").write_bytes(b"\x00garbage\xff" * 100)
    expected = "control.journal_file: " + str(tmp_path / "state" / "commands.sqlite3") + ": not a SQLite database"
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)
    assert_config_error(bessgw(env, "run", "--config", str(path)), path, expected)


def test_two_listeners_on_one_port_are_refused_even_for_another_machine(tmp_path: Path, env) -> None:
    port = free_tcp_port()
    path = tmp_path / "gw.toml"
    path.write_text(config_text(tmp_path / "state", tail=(
        f'[http]\nlisten = "127.0.0.1:{port}"\n'
        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://0.0.0.0:{port}/x"\n'
        'security_policies = ["None"]\nanonymous = "read"\n')), encoding="utf-8")
    expected = f"http.listen: TCP port {port} is also northbound.opcua.endpoint's: give each its own port"
    assert_config_error(bessgw(env, "check-config", str(path)), path, expected)
    result = bessgw(env, "check-config", "--skip-files", str(path))
    assert result.returncode == 78 and expected in result.stderr, result


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, env):
    tmp_path = tmp_path_factory.mktemp("hostile-config")
    config = tmp_path / "gw.toml"
    config.write_text(config_text(tmp_path / "state"), encoding="utf-8")
    process = GatewayProcess(config, env, tmp_path)
    process.wait_notify("READY")
    process.wait_log(lambda e: e.get("event") == "control_ready")
    wait_admin_socket(tmp_path / "state")
    process.config = config
    yield process
    process.stop()


def test_reload_of_a_disordered_unit_timing_is_rejected_and_the_gateway_runs_on(gateway, env) -> None:
    """SIGHUP with ``stale_after_s`` of a unit above ``bad_after_s`` of ``[defaults]`` ended the daemon
    (exit 1, an ExceptionGroup from the reload task): the units were left without control."""
    gateway.config.write_text(config_text(gateway.config.parent / "state", "stale_after_s = 7.0"), encoding="utf-8")
    seen = len(gateway.log_lines)
    gateway.signal(signal.SIGHUP)
    rejected = gateway.wait_log(lambda e: e.get("event") == "reload_rejected" and gateway.log_lines.index(e) >= seen)
    assert "units[0].stale_after_s: 7 s must not exceed defaults.bad_after_s (5 s)" in rejected["problem"]
    assert "rejected" in gateway.wait_notify("READY")["STATUS"]
    assert gateway.proc.poll() is None
    # the file it refused still leads `bessgw status` to the running gateway (a warning says the file is bad):
    # it answered only "units[0].stale_after_s: ..." (exit 78) while the gateway ran on
    result = bessgw(env, "status", "--config", str(gateway.config), "--json")
    assert result.returncode == 0, result.stderr
    assert [unit["id"] for unit in json.loads(result.stdout)["units"]] == ["m1"]
    assert f"{gateway.config}: warning: the file is not a valid config" in result.stderr, result.stderr
    gateway.config.write_text(config_text(gateway.config.parent / "state"), encoding="utf-8")
    status = gateway_status(gateway.config, env)  # it answers, with the unit of the config it kept
    assert [unit["id"] for unit in status["units"]] == ["m1"]


def test_reload_with_an_unknown_deadband_name_is_rejected_before_any_service_stops(gateway, env) -> None:
    """A reload is accepted or refused whole: a typo only the OPC UA layer knows is found before the old
    server is stopped to build the new one (which would have failed, leaving SCADA without a server)."""
    gateway.config.write_text(config_text(gateway.config.parent / "state")
                              + "[northbound.opcua]\ndeadbands = { PowerKW = 1.0 }\n", encoding="utf-8")
    seen = len(gateway.log_lines)
    gateway.signal(signal.SIGHUP)
    rejected = gateway.wait_log(lambda e: e.get("event") == "reload_rejected" and gateway.log_lines.index(e) >= seen)
    assert "northbound.opcua.deadbands: unknown variable(s) PowerKW" in rejected["problem"]
    assert gateway.proc.poll() is None
    gateway.config.write_text(config_text(gateway.config.parent / "state"), encoding="utf-8")
    assert [unit["id"] for unit in gateway_status(gateway.config, env)["units"]] == ["m1"]


def test_an_invalid_config_of_a_gateway_that_is_not_running_is_a_config_error(tmp_path: Path, env) -> None:
    path = tmp_path / "gw.toml"
    path.write_text(config_text(tmp_path / "state", "stale_after_s = 7.0"), encoding="utf-8")
    result = bessgw(env, "status", "--config", str(path))
    assert_config_error(result, path, "units[0].stale_after_s: 7 s must not exceed defaults.bad_after_s (5 s)")
