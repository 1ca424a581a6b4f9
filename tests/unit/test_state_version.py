"""The state directory's version: absent is release 0.2.0's layout, older migrates in place, newer refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bessgw.config.state_version import (
    STATE_VERSION,
    STATE_VERSION_FILE,
    StateVersionProblem,
    read_state_version,
    write_state_version,
)
from bessgw.control.errors import JournalError
from bessgw.control.journal import Journal, migrate_state_dir


def test_no_marker_is_the_previous_layout_and_the_marker_round_trips(tmp_path: Path) -> None:
    assert read_state_version(tmp_path) == 1
    assert read_state_version(tmp_path / "not-yet-created") == 1
    write_state_version(tmp_path, 2)
    assert (tmp_path / STATE_VERSION_FILE).read_text() == "2\n"
    assert read_state_version(tmp_path) == 2
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed, not left behind


@pytest.mark.parametrize(("content", "message"), [
    (f"{STATE_VERSION + 1}\n", "newer bessgw release"),
    ("99", "newer bessgw release"),
    ("two", "not a state directory version"),
    ("0", "not a state directory version"),
    ("\xff\xfe", "not a state directory version"),
    ("7" * 40, "not a state directory version"),
])
def test_a_newer_or_garbled_marker_is_refused_in_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / STATE_VERSION_FILE).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(StateVersionProblem, match=message) as info:
        read_state_version(tmp_path)
    assert "\n" not in str(info.value)


def test_migration_of_a_previous_release_dir_keeps_the_journal_and_is_idempotent(tmp_path: Path) -> None:
    with Journal.in_state_dir(tmp_path) as journal:  # what release 0.2.0 leaves: a schema-2 journal, no marker
        journal.record(command_id="c1", kind="setpoint", source="operator", principal="ops", received_at=1.0,
                       requested_p_kw=10.0)
    assert migrate_state_dir(tmp_path) == (1, STATE_VERSION)
    assert read_state_version(tmp_path) == STATE_VERSION
    assert migrate_state_dir(tmp_path) == (STATE_VERSION, STATE_VERSION)
    with Journal.in_state_dir(tmp_path) as journal:
        assert journal.get("c1") is not None and journal.get("c1").requested_p_kw == 10.0


def test_a_newer_dir_is_refused_before_anything_is_opened(tmp_path: Path) -> None:
    write_state_version(tmp_path, STATE_VERSION + 1)
    with pytest.raises(StateVersionProblem):
        migrate_state_dir(tmp_path)
    assert not (tmp_path / "commands.sqlite3").exists()


def test_a_journal_of_a_newer_schema_without_a_marker_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "commands.sqlite3")
    db.execute("PRAGMA user_version=9")
    db.close()
    with pytest.raises(JournalError, match="newer"):
        migrate_state_dir(tmp_path)
    assert read_state_version(tmp_path) == 1  # nothing recorded: the directory is left as it was
