"""The command-line contracts: command names, flags, output and exit codes, run as a user would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bessgw import __version__
from tests.integration.daemon_harness import bessgw_command


def bessgw(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_version(subprocess_env) -> None:
    result = bessgw("--version", env=subprocess_env)
    assert result.returncode == 0
    assert result.stdout.strip() == f"bessgw {__version__}"


def test_plugins_list_shows_chemistries_and_a_broken_plugin(subprocess_env) -> None:
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_test_broken_hook,bessgw_example")
    result = bessgw("plugins", "list", env=env)
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["kind", "name", "plugin", "version", "api_version", "status"]
    for chemistry in ("lfp", "nmc", "lto", "vrfb"):
        assert any(line.split()[:2] == ["chemistry", chemistry] and line.split()[-1] == "ok" for line in lines)
    assert any(line.split()[:2] == ["driver", "in_memory"] for line in lines)
    assert any(line.split()[:2] == ["plugin", "bessgw_test_broken_hook"] and line.split()[-1] == "failed"
               for line in lines)
    assert "bessgw_test_broken_hook: failed: register_drivers raised RuntimeError: deliberately broken hook" \
        in result.stderr


def test_plugins_list_json(subprocess_env) -> None:
    env = dict(subprocess_env, BESSGW_PLUGINS="bessgw_test_future_api")
    result = bessgw("plugins", "list", "--json", env=env)
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert {"kind", "name", "plugin", "version", "api_version", "status", "reason"} == set(rows[0])
    failed = [row for row in rows if row["status"] == "failed"]
    assert failed == [{"kind": "plugin", "name": "bessgw_test_future_api", "plugin": "bessgw_test_future_api",
                       "version": "", "api_version": "2.0", "status": "failed",
                       "reason": "targets plugin API 2.0, this bessgw provides 1.0"}]
    assert {row["name"] for row in rows if row["kind"] == "chemistry"} >= {"lfp", "nmc", "lto", "vrfb"}


GOOD = '[gateway]\nid = "gw1"\nstate_dir = "/tmp/x"\n'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + 'colour = "red"\n', "{path}: gateway.colour: unknown key"),
        (GOOD + '[defaults]\npoll_interval_s = "fast"\n',
         "{path}: defaults.poll_interval_s: Input should be a valid number"),
        (GOOD + "[defaults\n", "{path}: line 4, column 10: TOML syntax error:"),
    ],
    ids=["unknown-key", "wrong-type", "toml-syntax"],
)
def test_check_config_errors_exit_78(tmp_path: Path, subprocess_env, text: str, expected: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(text)
    result = bessgw("check-config", str(path), env=subprocess_env)
    assert result.returncode == 78
    assert expected.format(path=path) in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_ok(tmp_path: Path, subprocess_env) -> None:
    path = tmp_path / "site.toml"
    path.write_text(GOOD)
    result = bessgw("check-config", str(path), env=subprocess_env)
    assert (result.returncode, result.stdout) == (0, "ok\n")


def test_config_schema_is_json_schema(subprocess_env) -> None:
    result = bessgw("config-schema", env=subprocess_env)
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"gateway", "units", "southbound", "defaults", "plugins", "simulators"} <= set(schema["properties"])


def test_sim_unknown_simulator_is_a_usage_error(subprocess_env) -> None:
    result = bessgw("sim", "no_such_sim", env=subprocess_env)
    assert result.returncode == 2
    assert "unknown simulator 'no_such_sim'" in result.stderr
