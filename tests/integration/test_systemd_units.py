"""The shipped systemd units: contracts the daemon relies on, what ``bessgw install-service`` makes of them,
and systemd's own verdict on the result."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bessgw.config import GatewaySection
from tests.integration.daemon_harness import bessgw_command

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "bessgw" / "daemon" / "systemd"


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string((UNITS / name).read_text())
    return parser


@pytest.mark.parametrize("name", ["bessgw.service", "bessgw@.service"])
def test_unit_contracts(name: str) -> None:
    service = read_unit(name)["Service"]
    assert service["Type"] == "notify"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "78"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert int(service["WatchdogSec"]) > 0
    grace = GatewaySection.model_fields["shutdown_grace_s"]
    assert float(service["TimeoutStopSec"]) > float(grace.default) * 2
    assert service["User"] == "bessgw"
    assert service["StateDirectory"].startswith("bessgw")
    # systemd would create /etc/bessgw root:root 0750, unreadable for User=bessgw: the install makes it
    # root:bessgw (docs/install.md), so the unit must not ask systemd for it
    assert "ConfigurationDirectory" not in service and "ConfigurationDirectoryMode" not in service
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert "AF_CAN" in service["RestrictAddressFamilies"].split()


def test_template_instances_get_their_own_config_and_state() -> None:
    service = read_unit("bessgw@.service")["Service"]
    assert "/etc/bessgw/%i.toml" in service["ExecStart"]
    assert service["StateDirectory"] == "bessgw/%i"


def install_service(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), "install-service", "--dest", str(tmp_path / "units"),
                           "--sysusers-dest", str(tmp_path / "sysusers.d"), *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_install_service_points_the_units_at_this_installation(tmp_path: Path, subprocess_env) -> None:
    result = install_service(tmp_path, subprocess_env)
    assert result.returncode == 0, result.stderr
    binary = Path(sys.prefix) / "bin" / "bessgw"  # the venv running the command
    for name in ("bessgw.service", "bessgw@.service"):
        written = tmp_path / "units" / name
        assert f"wrote {written}" in result.stdout
        assert written.stat().st_mode & 0o777 == 0o644
        assert written.read_text() == (UNITS / name).read_text().replace("/usr/bin/bessgw", str(binary))
    assert (tmp_path / "sysusers.d" / "bessgw.conf").read_text() == (UNITS / "bessgw.sysusers.conf").read_text()
    assert "systemd-sysusers" in result.stdout  # what to do next


def test_install_service_dry_run_writes_nothing(tmp_path: Path, subprocess_env) -> None:
    result = install_service(tmp_path, subprocess_env, "--dry-run", "--prefix", sys.prefix)
    assert result.returncode == 0, result.stderr
    assert f"# ---- {tmp_path / 'units' / 'bessgw.service'}" in result.stdout
    assert f"ExecStart={Path(sys.prefix) / 'bin' / 'bessgw'} run --config /etc/bessgw/bessgw.toml" in result.stdout
    assert not (tmp_path / "units").exists()


@pytest.mark.parametrize(("prefix", "expected"), [
    ("/home/alice/venv", "ProtectHome=yes"),
    ("relative/venv", "absolute path"),
    ("/opt/no-bessgw-here", "no executable bessgw"),
    ("/opt/with space", "letters, digits"),
])
def test_install_service_refuses_a_prefix_the_unit_cannot_run(tmp_path: Path, subprocess_env, prefix: str,
                                                              expected: str) -> None:
    result = install_service(tmp_path, subprocess_env, "--prefix", prefix)
    assert result.returncode == 73 and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "units").exists()


def test_install_service_unwritable_destination_is_a_clear_error(tmp_path: Path, subprocess_env) -> None:
    (tmp_path / "units").write_text("a file where the directory should be")
    result = install_service(tmp_path, subprocess_env)
    assert result.returncode == 73 and f"cannot write {tmp_path / 'units'}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (scripts/bootstrap installs the systemd package)")
@pytest.mark.parametrize(("name", "instance"), [("bessgw.service", "bessgw.service"),
                                                ("bessgw@.service", "bessgw@gw1.service")])
def test_systemd_analyze_verify_accepts_the_installed_unit(tmp_path: Path, subprocess_env, name: str,
                                                          instance: str) -> None:
    assert install_service(tmp_path, subprocess_env).returncode == 0
    unit = tmp_path / "units" / instance
    if instance != name:  # a template is verified as one of its instances
        (tmp_path / "units" / name).rename(unit)
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if instance in line or "Unknown" in line]
    assert result.returncode == 0 and not problems, result.stderr
