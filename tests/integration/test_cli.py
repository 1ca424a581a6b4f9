"""The command-line contracts: command names, flags, output and exit codes, run as a user would."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from bessgw import __version__
from tests.integration.daemon_harness import bessgw_command

pytestmark = pytest.mark.daemon  # runs the bessgw command in subprocesses


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


def test_journal_tail_text_and_json(tmp_path: Path, subprocess_env) -> None:
    from bessgw.control import Arbiter, Command, CommandProcessor, Journal
    from bessgw.control.arbitration import SourcePolicy

    state = tmp_path / "state"
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nid = "gw1"\nstate_dir = "{state}"\n')
    with Journal.in_state_dir(state) as journal:
        arbiter = Arbiter([SourcePolicy("local", 300, 30.0)], hold_s=5.0, now=1000.0)
        processor = CommandProcessor(journal, arbiter, clock=lambda: 1000.0)
        processor.submit(Command(command_id="cmd-1", source="local", p_kw=250.0, principal="alice"))
        processor.submit(Command(command_id="cmd-2", source="local", p_kw=-100.0, principal="alice"))

    text = bessgw("journal", "tail", "--config", str(config), env=subprocess_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2 and "cmd-1" in lines[0] and "cmd-2" in lines[1]

    as_json = bessgw("journal", "tail", "--config", str(config), "--json", "-n", "1", env=subprocess_env)
    assert as_json.returncode == 0, as_json.stderr
    (entry,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert (entry["command_id"], entry["source"], entry["requested_p_kw"]) == ("cmd-2", "local", -100.0)
    assert entry["principal"] == "alice"


def test_journal_tail_without_a_journal_is_a_clear_error(tmp_path: Path, subprocess_env) -> None:
    config = tmp_path / "gw.toml"
    config.write_text(f'[gateway]\nid = "gw1"\nstate_dir = "{tmp_path / "nothing"}"\n')
    result = bessgw("journal", "tail", "--config", str(config), env=subprocess_env)
    assert result.returncode != 0
    assert "journal" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------ inputs that crashed or hung check-config (issue 12.6)


def _crash_configs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (config text, the key path its one error line must name)."""
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    federation = '[federation]\nbind_host = "127.0.0.1"\n'
    return {
        "nested-arrays": (GOOD + "[plugins.vendor_a]\nx = " + "[" * 5000 + "]" * 5000 + "\n", ""),
        "nul-in-path": ('[gateway]\nid = "gw1"\nstate_dir = "/tmp/a\\u0000b"\n', "gateway.state_dir"),
        "key-file-dev-zero": (GOOD + federation + 'key_file = "/dev/zero"\n', "federation.key_file"),
        "key-file-fifo": (GOOD + federation + f'key_file = "{fifo}"\n', "federation.key_file"),
        "simulator-help": (GOOD + '[[simulators]]\nname = "vendor_a"\nargs = ["--port", "1", "--help"]\n',
                           "simulators[0].args"),
        "journal-root": (GOOD + '[control]\njournal_file = "/"\n', "control.journal_file"),
        "journal-escapes": (GOOD + '[control]\njournal_file = "../../x"\n', "control.journal_file"),
    }


@pytest.mark.parametrize("name", ["nested-arrays", "nul-in-path", "key-file-dev-zero", "key-file-fifo",
                                  "simulator-help", "journal-root", "journal-escapes"])
def test_check_config_never_crashes_or_hangs(tmp_path: Path, subprocess_env, name: str) -> None:
    text, key = _crash_configs(tmp_path)[name]
    path = tmp_path / "site.toml"
    path.write_text(text)
    result = bessgw("check-config", str(path), env=subprocess_env, timeout=30)
    assert result.returncode == 78, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}: {key}") and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_check_config_of_a_fifo_does_not_hang(tmp_path: Path, subprocess_env) -> None:
    fifo = tmp_path / "site.toml"
    os.mkfifo(fifo)
    result = bessgw("check-config", str(fifo), env=subprocess_env, timeout=30)
    assert (result.returncode, result.stderr) == (78, f"{fifo}: a FIFO, not a regular file\n")


def test_check_config_skip_files_lists_what_it_skipped(tmp_path: Path, subprocess_env) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[gateway]\nid = "gw1"\nstate_dir = "/nonexistent/bessgw"\n'
                    '[federation]\nbind_host = "10.9.9.9"\nkey_file = "/nonexistent/campus.keys"\n')
    refused = bessgw("check-config", str(path), env=subprocess_env)
    assert refused.returncode == 78 and "federation.key_file" in refused.stderr
    skipped = bessgw("check-config", "--skip-files", str(path), env=subprocess_env)
    assert (skipped.returncode, skipped.stdout) == (0, "ok\n"), skipped.stderr
    assert f"{path}: skipped: federation.key_file: /nonexistent/campus.keys" in skipped.stderr


def test_run_help_prints_usage(subprocess_env) -> None:
    result = bessgw("run", "--help", env=subprocess_env)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: bessgw run") and "--config" in result.stdout


def test_run_refuses_a_busy_opcua_port_with_exit_78(tmp_path: Path, subprocess_env) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = tmp_path / "site.toml"
        path.write_text(f'[gateway]\nid = "gw1"\nstate_dir = "{tmp_path / "state"}"\n'
                        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{port}/x"\n')
        result = bessgw("run", "--config", str(path), env=subprocess_env, timeout=60)
    assert result.returncode == 78
    assert result.stderr == f"{path}: northbound.opcua.endpoint: TCP 127.0.0.1:{port} is in use by another process\n"
    assert not (tmp_path / "state").exists()  # refused before anything was created


def test_run_refuses_an_unusable_state_dir_with_exit_78(tmp_path: Path, subprocess_env) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "site.toml"
    path.write_text(f'[gateway]\nid = "gw1"\nstate_dir = "{tmp_path / "file" / "state"}"\n')
    result = bessgw("run", "--config", str(path), env=subprocess_env, timeout=60)
    assert result.returncode == 78
    assert result.stderr == f"{path}: gateway.state_dir: {tmp_path / 'file'} is not a directory\n"


@pytest.mark.parametrize("command", [["status"], ["release"], ["journal", "tail"], ["members"], ["campus", "status"]])
def test_a_missing_config_exits_78_which_the_readme_lists(tmp_path: Path, subprocess_env, command: list[str]) -> None:
    from tests.unit.test_readme import _readme_exit_codes

    missing = tmp_path / "nowhere.toml"
    result = bessgw(*command, "--config", str(missing), env=subprocess_env)
    assert result.returncode == 78 and f"{missing}: cannot read" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert 78 in _readme_exit_codes()[" ".join(command)]


def test_status_of_a_gateway_that_is_not_running_exits_70(tmp_path: Path, subprocess_env) -> None:
    path = tmp_path / "site.toml"
    path.write_text(f'[gateway]\nid = "gw1"\nstate_dir = "{tmp_path / "state"}"\n')
    result = bessgw("status", "--config", str(path), env=subprocess_env)
    assert result.returncode == 70 and "cannot reach the gateway 'gw1'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_for_another_machine_skips_and_names_its_key_files(tmp_path: Path, subprocess_env) -> None:
    path = tmp_path / "site.toml"
    path.write_text(GOOD + '[federation]\nadvertise_host = "10.0.0.7"\nkey_file = "/etc/bessgw/elsewhere.keys"\n')
    here = bessgw("check-config", str(path), env=subprocess_env)
    assert here.returncode == 78 and "federation.key_file" in here.stderr  # read, and missing on this machine
    there = bessgw("check-config", "--skip-files", str(path), env=subprocess_env)
    assert (there.returncode, there.stdout) == (0, "ok\n"), there.stderr
    assert f"{path}: skipped: federation.key_file: /etc/bessgw/elsewhere.keys (not read: --skip-files)" \
        in there.stderr.splitlines()
    as_json = json.loads(bessgw("check-config", "--skip-files", "--json", str(path), env=subprocess_env).stdout)
    assert as_json["ok"] is True and as_json["problems"] == []
    assert "federation.key_file: /etc/bessgw/elsewhere.keys (not read: --skip-files)" in as_json["skipped"]
    # --skip-files skips files, not checks: a wrong key is still an error, also as JSON
    path.write_text(GOOD + "[federation]\nadvertize_host = 1\n")
    bad = bessgw("check-config", "--skip-files", "--json", str(path), env=subprocess_env)
    assert bad.returncode == 78
    problem = (f"{path}: federation.advertize_host: unknown key"
               " (check the spelling; `bessgw config-schema` lists every key)")
    assert json.loads(bad.stdout) == {"ok": False, "problems": [problem]}
