"""The daemon as systemd runs it: a real subprocess, a real NOTIFY_SOCKET, real signals."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.daemon_harness import GatewayProcess, bessgw_command

pytestmark = pytest.mark.daemon

BASE = """
[gateway]
id = "gw-test"
state_dir = "{state}"
log_format = "json"
log_level = "info"
telemetry_log_interval_s = 0.2
shutdown_grace_s = 4

[defaults]
poll_interval_s = 0.05
"""

UNIT = """
[[units]]
id = "{id}"
driver = "{driver}"
[units.options]
{options}
"""


def config_text(tmp_path: Path, units: list[tuple[str, str, str]]) -> str:
    text = BASE.format(state=tmp_path / "state")
    for unit_id, driver, options in units:
        text += UNIT.format(id=unit_id, driver=driver, options=options)
    return text


@pytest.fixture
def gateway(tmp_path: Path, subprocess_env: dict[str, str]):
    started: list[GatewayProcess] = []

    def start(units: list[tuple[str, str, str]]) -> GatewayProcess:
        config = tmp_path / "gw.toml"
        config.write_text(config_text(tmp_path, units), encoding="utf-8")
        env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example,bessgw_test_flaky")
        process = GatewayProcess(config, env, tmp_path)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def test_lifecycle_ready_reload_bad_reload_and_clean_stop(gateway, tmp_path: Path) -> None:
    gw = gateway([("mem-1", "in_memory", "soc_pct = 40")])
    ready = gw.wait_notify("READY")
    assert ready["STATUS"].startswith("1 units")
    gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "mem-1"
                and e.get("quality") == "good")
    gw.wait_notify("WATCHDOG")

    # SIGHUP with a new unit: it starts, the old one keeps running
    (tmp_path / "gw.toml").write_text(
        config_text(tmp_path, [("mem-1", "in_memory", "soc_pct = 40"), ("mem-2", "in_memory", "")]))
    gw.signal(signal.SIGHUP)
    gw.wait_notify("RELOADING")
    assert gw.wait_notify("READY")["STATUS"].startswith("2 units")
    gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "mem-2")
    assert not any(e.get("event") == "unit_stopped" and e.get("unit") == "mem-1" for e in gw.log_lines)

    # SIGHUP with a broken config: logged with the key path, ignored, the old config keeps running
    (tmp_path / "gw.toml").write_text(config_text(tmp_path, [("mem-1", "in_memory", "energy_kwh = -1")]))
    gw.signal(signal.SIGHUP)
    rejected = gw.wait_log(lambda e: e.get("event") == "reload_rejected")
    assert "units[0].options.energy_kwh: Input should be greater than 0 (got -1)" in rejected["problem"]
    assert "rejected" in gw.wait_notify("READY")["STATUS"]
    mark = len(gw.log_lines)
    gw.wait_log(lambda e: e.get("event") == "telemetry" and e.get("unit") == "mem-2"
                and gw.log_lines.index(e) >= mark)
    assert gw.proc.poll() is None

    # SIGHUP with timeouts that break the stale/bad limits: what check-config refuses, a reload refuses too
    text = config_text(tmp_path, [("mem-1", "in_memory", "soc_pct = 40"), ("mem-2", "in_memory", "")])
    text = text.replace("poll_interval_s = 0.05", "poll_interval_s = 0.05\nstale_after_s = 0.01")
    (tmp_path / "gw.toml").write_text(text)
    seen = len(gw.log_lines)
    gw.signal(signal.SIGHUP)
    rejected = gw.wait_log(lambda e: e.get("event") == "reload_rejected" and gw.log_lines.index(e) >= seen)
    assert "defaults.poll_interval_s" in rejected["problem"] and "stale_after_s" in rejected["problem"], rejected
    assert gw.proc.poll() is None

    # SIGTERM: STOPPING=1 and exit 0 well within 5 s
    started = time.monotonic()
    gw.signal(signal.SIGTERM)
    gw.wait_notify("STOPPING")
    assert gw.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5.0
    gw.wait_log(lambda e: e.get("event") == "stopped")


def test_a_hanging_and_a_crashing_unit_do_not_block_a_healthy_one(gateway) -> None:
    gw = gateway([
        ("hangs", "flaky", 'mode = "hang"'),
        ("crashes", "flaky", 'mode = "crash"'),
        ("healthy", "in_memory", ""),
    ])
    gw.wait_notify("READY")
    crash = gw.wait_log(lambda e: e.get("event") == "unit_driver_crashed" and e.get("unit") == "crashes")
    assert "ZeroDivisionError" in crash["error"]
    for _ in range(3):  # the healthy unit keeps reporting good data, again and again
        mark = len(gw.log_lines)
        gw.wait_log(lambda e, mark=mark: e.get("event") == "telemetry" and e.get("unit") == "healthy"
                    and e.get("quality") == "good" and gw.log_lines.index(e) >= mark)
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(timeout=5) == 0


def test_sigint_stops_too(gateway) -> None:
    gw = gateway([("mem-1", "in_memory", "")])
    gw.wait_notify("READY")
    gw.signal(signal.SIGINT)
    assert gw.proc.wait(timeout=5) == 0


def test_run_with_a_bad_config_exits_78_without_traceback(tmp_path: Path, subprocess_env) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[gateway]\nid = "gw"\nlog_levle = "info"\n')
    result = subprocess.run([*bessgw_command(), "run", "--config", str(config)],
                            env=subprocess_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 78
    assert f"{config}: gateway.log_levle: unknown key" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_service_that_cannot_start_ends_the_start_with_one_line_naming_its_key(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The failure is raised inside the daemon's task group: it must still reach the operator as the one
    error line naming the key and exit 78, not as an uncaught exception group without a message.

    The HTTP service fails at start on a certificate whose key is another one's: each file is well-formed,
    so pre-flight (which now probes a busy listen port itself) lets it through to the service."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key, other_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gw")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
                   .sign(key, hashes.SHA256()))
    (tmp_path / "http.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "http.key").write_bytes(other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    config = tmp_path / "gw.toml"
    config.write_text(config_text(tmp_path, [("mem-1", "in_memory", "")])
                      + '\n[http]\nlisten = "127.0.0.1:0"\n[http.tls]\ncert_file = "http.crt"\n'
                      'key_file = "http.key"\n', encoding="utf-8")
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    result = subprocess.run([*bessgw_command(), "run", "--config", str(config)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 78, (result.stdout[-2000:], result.stderr[-2000:])
    assert f"{config}: http: cannot start: SSLError" in result.stderr, result.stderr
    assert "ExceptionGroup" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
