"""This release next to the previous one: a state directory written by the previous release's daemon is
migrated in place, each release's CLI works against the other's daemon, a newer state directory is
refused (exit 78), and campus records written now are read by the previous release.

The previous release runs from its own source tree (``tests.upgrade.release``) with the test venv's plugins.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bessgw.config.state_version import STATE_VERSION, STATE_VERSION_FILE
from bessgw.control.journal import Journal, migrate_state_dir
from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.upgrade.release import export_release

pytestmark = [pytest.mark.daemon, pytest.mark.integration, pytest.mark.timeout(240)]

CONFIG = """
[gateway]
id = "gw-up"
state_dir = "{state}"
log_format = "json"
log_level = "info"
shutdown_grace_s = 4

[defaults]
poll_interval_s = 0.05

[[units]]
id = "mem-1"
driver = "in_memory"

[federation]
bind_host = "127.0.0.1"
bind_port = 0
keys = ["{key}"]
"""


def _envs(subprocess_env: dict[str, str], previous_release: Path) -> tuple[dict[str, str], dict[str, str]]:
    new = dict(subprocess_env, BESSGW_PLUGINS="bessgw_example")
    # PYTHONSAFEPATH: ``-m`` must not put the working directory (this checkout) ahead of the release's tree
    old = dict(new, PYTHONPATH=os.pathsep.join([str(previous_release), new.get("PYTHONPATH", "")]),
               PYTHONSAFEPATH="1")
    return new, old


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*bessgw_command(), *args], env=env, capture_output=True, text=True, timeout=60)


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stdout


def _version(env: dict[str, str]) -> str:
    return _ok(_cli(env, "--version")).strip()


def test_previous_release_state_dir_migrates_and_each_cli_talks_to_the_other_daemon(
        tmp_path: Path, subprocess_env: dict[str, str], previous_release: Path) -> None:
    new_env, old_env = _envs(subprocess_env, previous_release)
    assert _version(old_env) == "bessgw 0.2.0" and _version(new_env) != "bessgw 0.2.0"
    state = tmp_path / "state"
    config = tmp_path / "gw.toml"
    config.write_text(CONFIG.format(state=state, key="A" * 43 + "="), encoding="utf-8")

    # the previous release runs, and this release's CLI drives it (status, members, a journaled setpoint)
    old = GatewayProcess(config, old_env, tmp_path)
    try:
        old.wait_notify("READY", 30)
        status = json.loads(_ok(_cli(new_env, "status", "--config", str(config), "--json")))
        assert status["version"] == "0.2.0" and [u["id"] for u in status["units"]] == ["mem-1"], status
        assert "gw-up" in _ok(_cli(new_env, "members", "--config", str(config)))
        _ok(_cli(new_env, "setpoint", "--config", str(config), "--p-kw", "12.5", "--id", "before-upgrade"))
        old.signal(signal.SIGTERM)
        assert old.proc.wait(timeout=10) == 0
    finally:
        old.stop()
    assert not (state / STATE_VERSION_FILE).exists()  # release 0.2.0's layout: no marker
    assert (state / "commands.sqlite3").is_file()

    # this release starts on that directory: migrated in place, the journal kept
    new = GatewayProcess(config, new_env, tmp_path)
    try:
        new.wait_notify("READY", 30)
        migrated = new.wait_log(lambda e: e.get("event") == "state_dir_migrated")
        assert (migrated["from_version"], migrated["to_version"]) == (1, STATE_VERSION)
        assert (state / STATE_VERSION_FILE).read_text() == f"{STATE_VERSION}\n"
        tail = [json.loads(line) for line in
                _ok(_cli(new_env, "journal", "tail", "--config", str(config), "--json")).splitlines()]
        assert "before-upgrade" in {entry["command_id"] for entry in tail}
        # the previous release's CLI against this release's daemon
        status = json.loads(_ok(_cli(old_env, "status", "--config", str(config), "--json")))
        assert status["version"] != "0.2.0" and [u["id"] for u in status["units"]] == ["mem-1"], status
        members = _ok(_cli(old_env, "members", "--config", str(config)))
        assert "gw-up" in members and "alive" in members
        _ok(_cli(old_env, "setpoint", "--config", str(config), "--p-kw", "7", "--id", "old-cli-after-upgrade"))
        new.signal(signal.SIGTERM)
        assert new.proc.wait(timeout=10) == 0
    finally:
        new.stop()
    with Journal.in_state_dir(state) as journal:
        assert journal.get("old-cli-after-upgrade") is not None

    # a state directory of a newer release: refused in one line with exit 78, by run, check-config, journal tail
    (state / STATE_VERSION_FILE).write_text(f"{STATE_VERSION + 1}\n")
    for args in (("run", "--config", str(config)), ("check-config", str(config)),
                 ("journal", "tail", "--config", str(config))):
        result = _cli(new_env, *args)
        assert result.returncode == 78, (args, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if "state-version" in line or "newer" in line]
        assert len(lines) == 1 and "newer bessgw release" in lines[0], result.stderr
        assert "Traceback" not in result.stderr
    assert (state / STATE_VERSION_FILE).read_text() == f"{STATE_VERSION + 1}\n"  # left alone


def test_a_release_010_journal_is_migrated_with_its_state_dir(tmp_path: Path) -> None:
    tree = export_release("v0.1.0", tmp_path / "v0.1.0")
    state = tmp_path / "state"
    write = ("import sys; from bessgw.control.journal import Journal; j = Journal.in_state_dir(sys.argv[1]); "
             "j.record(command_id='c010', kind='setpoint', source='operator', principal='ops', received_at=1.0, "
             "requested_p_kw=5.0); j.close()")
    subprocess.run([sys.executable, "-c", write, str(state)], cwd=tree, env=dict(os.environ, PYTHONPATH=str(tree)),
                   check=True, timeout=60)
    db = sqlite3.connect(state / "commands.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1  # really release 0.1.0's schema
    db.close()
    assert migrate_state_dir(state) == (1, STATE_VERSION)
    with Journal.in_state_dir(state) as journal:
        entry = journal.get("c010")
        assert entry is not None and entry.requested_p_kw == 5.0


def test_campus_records_written_now_are_read_by_the_previous_release(previous_release: Path) -> None:
    from bessgw.campus.records import Applied, CampusSetpoint, Share

    records = [
        CampusSetpoint(100.0, 0.0, "cmd-1", "scada", "ops", "gw1", 1.7e9, None, ""),
        Share("gw1", 50.0, 0.0, 12, "cmd-1", 1.7e9 + 5, ""),
        Applied("gw1", 13, 50.0),
    ]
    read = ("import sys, json; from bessgw.campus import records as r; "
            "print(json.dumps([r.__dict__[k].decode(bytes.fromhex(v)).__dict__ "
            "for k, v in json.loads(sys.stdin.read())]))")
    payload = json.dumps([[type(rec).__name__, rec.encode().hex()] for rec in records])
    result = subprocess.run([sys.executable, "-c", read], input=payload, cwd=previous_release, capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=str(previous_release)), timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [rec.__dict__ for rec in records]
