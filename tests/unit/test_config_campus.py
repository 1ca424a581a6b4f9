"""``[campus.coordination]``: the etcd settings, and the lease rule check-config enforces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bessgw.config import load_config
from bessgw.errors import EX_CONFIG, ConfigError

MINIMAL = """
[gateway]
id = "gw1"
state_dir = "/tmp/bessgw-test"
"""


def write(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(MINIMAL + extra, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == EX_CONFIG
    return info.value.problems


def test_without_campus_table_there_is_no_coordination(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")).campus is None
    config = load_config(write(tmp_path, "[campus]\n"))
    assert config.campus is not None and config.campus.coordination is None


def test_defaults_follow_the_measured_rules(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[campus.coordination]\nendpoints = ["127.0.0.1:2379", "127.0.0.1:22379"]\n'))
    coordination = config.campus.coordination
    assert coordination.endpoints == ["127.0.0.1:2379", "127.0.0.1:22379"]
    assert coordination.lease_ttl_s == 5
    assert coordination.election_timeout_s == 1.0
    assert coordination.keepalive_interval_s == pytest.approx(5 / 3)
    assert coordination.effective_fence_hold_s == pytest.approx(3.0)  # TTL - 2 x election timeout
    assert coordination.key_prefix == "/bessgw/campus/"
    assert not coordination.tls


def test_ttl_below_three_election_timeouts_is_refused_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, '[campus.coordination]\nendpoints = ["127.0.0.1:2379"]\nlease_ttl_s = 2\n')
    [line] = problems(path)
    assert line.startswith(f"{path}: campus.coordination.lease_ttl_s: ")
    assert "at least 3 x election_timeout_s = 3 s" in line


def test_the_rule_follows_the_clusters_election_timeout(tmp_path: Path) -> None:
    text = '[campus.coordination]\nendpoints = ["127.0.0.1:2379"]\nelection_timeout_s = 2.0\nlease_ttl_s = 5\n'
    [line] = problems(write(tmp_path, text))
    assert "campus.coordination.lease_ttl_s" in line and "6 s" in line
    ok = '[campus.coordination]\nendpoints = ["127.0.0.1:2379"]\nelection_timeout_s = 2.0\nlease_ttl_s = 6\n'
    assert load_config(write(tmp_path, ok)).campus.coordination.lease_ttl_s == 6


@pytest.mark.parametrize(
    ("extra", "key", "expectation"),
    [
        ('endpoints = ["localhost"]', "campus.coordination.endpoints", "host:port"),
        ('endpoints = ["127.0.0.1:70000"]', "campus.coordination.endpoints", "1..65535"),
        ("endpoints = []", "campus.coordination.endpoints", "at least 1"),
        ('endpoints = ["127.0.0.1:2379"]\nkey_prefix = "campus"', "campus.coordination.key_prefix", "start and end"),
        ('endpoints = ["127.0.0.1:2379"]\nfence_hold_s = 5.0', "campus.coordination", "fence_hold_s"),
        ('endpoints = ["127.0.0.1:2379"]\ncert_file = "c.pem"', "campus.coordination", "cert_file and key_file"),
        ('endpoints = ["127.0.0.1:2379"]\nrequest_timeout_s = 2.0', "campus.coordination", "request_timeout_s"),
        ('endpoints = ["127.0.0.1:2379"]\nlease_tl_s = 5', "campus.coordination.lease_tl_s", "unknown key"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, extra: str, key: str, expectation: str) -> None:
    path = write(tmp_path, f"[campus.coordination]\n{extra}\n")
    lines = problems(path)
    assert any(line.startswith(f"{path}: {key}") and expectation in line for line in lines), lines


def test_relative_tls_files_are_anchored_at_the_config_file(tmp_path: Path) -> None:
    text = ('[campus.coordination]\nendpoints = ["etcd1:2379"]\nca_file = "pki/ca.pem"\n'
            'cert_file = "pki/gw1.pem"\nkey_file = "/etc/bessgw/gw1.key"\n')
    coordination = load_config(write(tmp_path, text)).campus.coordination
    assert coordination.ca_file == tmp_path / "pki" / "ca.pem"
    assert coordination.cert_file == tmp_path / "pki" / "gw1.pem"
    assert coordination.key_file == Path("/etc/bessgw/gw1.key")
    assert coordination.tls


def test_check_config_refuses_a_short_lease(tmp_path: Path) -> None:
    path = write(tmp_path, '[campus.coordination]\nendpoints = ["127.0.0.1:2379"]\nlease_ttl_s = 2\n')
    result = subprocess.run([sys.executable, "-m", "bessgw.cli", "check-config", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == EX_CONFIG
    assert "campus.coordination.lease_ttl_s" in result.stderr + result.stdout
