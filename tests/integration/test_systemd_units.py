"""The shipped systemd units: contracts the daemon relies on, and systemd's own verdict on them."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bessgw.config import GatewaySection

pytestmark = pytest.mark.integration

UNITS = Path(__file__).resolve().parents[2] / "systemd"


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
    for key in ("StateDirectory", "ConfigurationDirectory"):
        assert service[key].startswith("bessgw")
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[key] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert "AF_CAN" in service["RestrictAddressFamilies"].split()


def test_template_instances_get_their_own_config_and_state() -> None:
    service = read_unit("bessgw@.service")["Service"]
    assert "/etc/bessgw/%i.toml" in service["ExecStart"]
    assert service["StateDirectory"] == "bessgw/%i"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize(("name", "instance"), [("bessgw.service", "bessgw.service"),
                                                ("bessgw@.service", "bessgw@gw1.service")])
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, name: str, instance: str) -> None:
    # systemd checks that ExecStart's binary exists: point it at this installation's bessgw
    executable = Path(sys.executable).with_name("bessgw")
    text = (UNITS / name).read_text().replace("/usr/bin/bessgw", str(executable))
    (tmp_path / instance).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(tmp_path / instance)],
                            capture_output=True, text=True, timeout=60)
    problems = [line for line in result.stderr.splitlines() if instance in line or "Unknown" in line]
    assert result.returncode == 0 and not problems, result.stderr
