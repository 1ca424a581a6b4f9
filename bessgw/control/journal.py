"""The command journal: every accepted command, durably, before it is acknowledged.

SQLite in WAL mode with ``synchronous=FULL``: a transaction is on disk (fsync'd WAL) when its COMMIT
returns, so a command whose acknowledgement left the gateway survives ``kill -9`` and power loss. The
command id is the primary key, which is what makes commands idempotent across restarts: a repeated id
finds the first entry and returns it unchanged.

Writes take a lock (one writer; calls may come from a worker thread so the fsync does not stall the
event loop). Reading for ``bessgw journal tail`` opens the file read-only and never creates it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from bessgw.config.state_version import STATE_VERSION, read_state_version, write_state_version
from bessgw.control.errors import JournalError
from bessgw.model.timestamp import local_iso
from bessgw.timing import DurationHistogram

_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS commands (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    command_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    source TEXT NOT NULL,
    principal TEXT NOT NULL,
    received_at REAL NOT NULL,
    requested_p_kw REAL,
    requested_q_kvar REAL,
    applied_p_kw REAL,
    applied_q_kvar REAL,
    expires_at REAL,
    note TEXT NOT NULL DEFAULT '',
    unit_id TEXT NOT NULL DEFAULT '',
    traceparent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS commands_by_source ON commands (source, seq);
CREATE TABLE IF NOT EXISTS heartbeats (
    source TEXT PRIMARY KEY,
    heard_at REAL NOT NULL
);
"""
#: schema 1 -> 2: unit commands and trace context; heartbeats persisted for restore
_MIGRATE_1_TO_2 = """
ALTER TABLE commands ADD COLUMN unit_id TEXT NOT NULL DEFAULT '';
ALTER TABLE commands ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS heartbeats (source TEXT PRIMARY KEY, heard_at REAL NOT NULL);
"""
_COLUMNS = ("seq", "command_id", "kind", "source", "principal", "received_at", "requested_p_kw",
            "requested_q_kvar", "applied_p_kw", "applied_q_kvar", "expires_at", "note", "unit_id", "traceparent")


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One accepted command as it was journaled (``seq`` orders entries; times are epoch seconds)."""

    seq: int
    command_id: str
    kind: str  # "setpoint", "release", "dropped" (the fail-safe dropped it) or "campus_setpoint" (a record)
    source: str
    principal: str
    received_at: float
    requested_p_kw: float | None
    requested_q_kvar: float | None
    applied_p_kw: float | None
    applied_q_kvar: float | None
    expires_at: float | None
    note: str = ""
    unit_id: str = ""  # empty: the gateway target
    traceparent: str = ""

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def as_line(self) -> str:
        """One human-readable line for ``bessgw journal tail``."""
        when = local_iso(self.received_at, "milliseconds")
        if self.kind == "campus_setpoint":  # committed in etcd for the whole campus; a record, never restored
            what = f"campus setpoint P {_kw(self.requested_p_kw)} kW, Q {_kw(self.requested_q_kvar)} kvar"
        elif self.kind == "setpoint":
            what = (f"P {_kw(self.requested_p_kw)} -> {_kw(self.applied_p_kw)} kW,"
                    f" Q {_kw(self.requested_q_kvar)} -> {_kw(self.applied_q_kvar)} kvar")
        else:
            what = self.kind
        if self.unit_id:
            what = f"unit {self.unit_id}: {what}"
        expiry = ""
        if self.expires_at is not None:
            expiry = " until " + local_iso(self.expires_at)
        note = f" ({self.note})" if self.note else ""
        return f"{self.seq:>6} {when} {self.source}/{self.principal or '-'} {self.command_id}: {what}{expiry}{note}"


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _entry(row: tuple) -> JournalEntry:
    return JournalEntry(*row)


#: the state directory, when the journal creates it: owner and the bessgw group only
STATE_DIR_MODE = 0o750
#: the journal holds who commanded what: owner read/write, group (operators: ``journal tail``) read, others nothing
JOURNAL_FILE_MODE = 0o640


def _restrict(path: Path) -> None:
    """Create the journal file with :data:`JOURNAL_FILE_MODE`, or take other users' access away from an
    existing one (journals of earlier versions were world-readable). SQLite creates the ``-wal`` and
    ``-shm`` files with the database file's mode, so they follow."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), JOURNAL_FILE_MODE)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o007:
            os.fchmod(fd, mode & ~0o007)
    finally:
        os.close(fd)


class Journal:
    """The durable command journal of one gateway (one SQLite file in the state directory)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self.appends = 0  #: committed write transactions (each one fsync'd), for metrics
        self.commit_duration = DurationHistogram()  #: COMMIT time, i.e. the WAL fsync
        try:
            self.path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
            _restrict(self.path)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: cannot switch the journal to WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 1:
                self._db.executescript(f"BEGIN; {_MIGRATE_1_TO_2} PRAGMA user_version=2; COMMIT;")
                version = 2
            if version > _SCHEMA_VERSION:
                raise JournalError(f"{self.path}: journal schema {version} is newer than this release understands"
                                   f" ({_SCHEMA_VERSION}); run the release that wrote it")
            self._db.executescript(_SCHEMA)
            if version == 0:
                self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as err:
            raise JournalError(f"{self.path}: cannot open the command journal: {err}") from err

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, file_name: str = "commands.sqlite3") -> Journal:
        return cls(Path(state_dir) / file_name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                committing_at = time.monotonic()
                self._db.execute("COMMIT")  # with synchronous=FULL this returns once the WAL is fsync'd
                self.commit_duration.observe(time.monotonic() - committing_at)
                self.appends += 1
            except sqlite3.Error as err:
                raise JournalError(f"{self.path}: journal write failed: {err}") from err

    # ------------------------------------------------------------------------------ writing

    def record(
        self,
        *,
        command_id: str,
        kind: str,
        source: str,
        principal: str,
        received_at: float,
        requested_p_kw: float | None = None,
        requested_q_kvar: float | None = None,
        applied_p_kw: float | None = None,
        applied_q_kvar: float | None = None,
        expires_at: float | None = None,
        note: str = "",
        unit_id: str = "",
        traceparent: str = "",
    ) -> tuple[JournalEntry, bool]:
        """Journal a command durably; returns ``(entry, True)``, or ``(first entry, False)`` for a known id."""
        for name, value in (("requested_p_kw", requested_p_kw), ("requested_q_kvar", requested_q_kvar),
                            ("applied_p_kw", applied_p_kw), ("applied_q_kvar", applied_q_kvar),
                            ("expires_at", expires_at), ("received_at", received_at)):
            if value is not None and not math.isfinite(value):
                raise JournalError(f"journal entry {command_id!r}: {name} is not finite ({value!r})")
        with self._transaction() as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM commands WHERE command_id = ?",
                             (command_id,)).fetchone()
            if row is not None:
                return _entry(row), False
            cursor = db.execute(
                "INSERT INTO commands (command_id, kind, source, principal, received_at, requested_p_kw,"
                " requested_q_kvar, applied_p_kw, applied_q_kvar, expires_at, note, unit_id, traceparent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (command_id, kind, source, principal, received_at, requested_p_kw, requested_q_kvar,
                 applied_p_kw, applied_q_kvar, expires_at, note, unit_id, traceparent),
            )
            seq = int(cursor.lastrowid or 0)
        return JournalEntry(seq, command_id, kind, source, principal, received_at, requested_p_kw,
                            requested_q_kvar, applied_p_kw, applied_q_kvar, expires_at, note, unit_id,
                            traceparent), True

    def record_heartbeats(self, heard_at: dict[str, float]) -> None:
        """Persist each source's last heartbeat (epoch s), so a restart can tell a silent source."""
        rows = [(source, at) for source, at in heard_at.items() if math.isfinite(at)]
        if not rows:
            return
        with self._transaction() as db:
            db.executemany("INSERT INTO heartbeats (source, heard_at) VALUES (?, ?) ON CONFLICT(source)"
                           " DO UPDATE SET heard_at = MAX(heard_at, excluded.heard_at)", rows)

    def heartbeats(self) -> dict[str, float]:
        """Each source's last persisted heartbeat (epoch s)."""
        with self._lock:
            try:
                return {source: float(at) for source, at in
                        self._db.execute("SELECT source, heard_at FROM heartbeats").fetchall()}
            except sqlite3.Error as err:
                raise JournalError(f"{self.path}: journal read failed: {err}") from err

    def record_drop(self, *, source: str, unit_id: str, command_id: str, reason: str, at: float) -> JournalEntry:
        """The fail-safe dropped ``command_id`` of ``source``: journaled so no restart re-applies it."""
        entry, _new = self.record(command_id=f"{command_id}#dropped", kind="dropped", source=source,
                                  principal="control", received_at=at, note=reason[:200], unit_id=unit_id)
        return entry

    def prune(self, before: float) -> int:
        """Delete entries received before ``before`` (epoch s), keeping each source's latest; returns how many."""
        with self._transaction() as db:
            cursor = db.execute(
                "DELETE FROM commands WHERE received_at < ? AND seq NOT IN"
                " (SELECT MAX(seq) FROM commands GROUP BY source, unit_id)", (before,))
            return cursor.rowcount

    # ------------------------------------------------------------------------------ reading

    def _query(self, sql: str, args: tuple = ()) -> list[JournalEntry]:
        with self._lock:
            try:
                return [_entry(row) for row in self._db.execute(sql, args).fetchall()]
            except sqlite3.Error as err:
                raise JournalError(f"{self.path}: journal read failed: {err}") from err

    def get(self, command_id: str) -> JournalEntry | None:
        found = self._query(f"SELECT {', '.join(_COLUMNS)} FROM commands WHERE command_id = ?", (command_id,))
        return found[0] if found else None

    def tail(self, n: int = 20) -> list[JournalEntry]:
        """The last ``n`` entries, oldest first."""
        return _tail(self._query, n)

    def page(self, before_seq: int | None = None, limit: int = 50) -> list[JournalEntry]:
        """Up to ``limit`` entries older than ``before_seq`` (all: the newest), newest first (REST paging)."""
        before = before_seq if before_seq is not None else 2**62
        return self._query(f"SELECT {', '.join(_COLUMNS)} FROM commands WHERE seq < ? ORDER BY seq DESC LIMIT ?",
                           (before, limit))

    def latest_per_source(self) -> dict[str, JournalEntry]:
        """Each source's most recent gateway-level command."""
        return {source: entry for (source, unit), entry in self.latest_per_target().items() if not unit}

    def latest_per_target(self) -> dict[tuple[str, str], JournalEntry]:
        """The most recent command per (source, unit id — empty for the gateway): what a restart may re-apply."""
        rows = self._query(f"SELECT {', '.join(_COLUMNS)} FROM commands WHERE seq IN"
                           " (SELECT MAX(seq) FROM commands GROUP BY source, unit_id) ORDER BY seq")
        return {(entry.source, entry.unit_id): entry for entry in rows}

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM commands").fetchone()[0])


def _tail(query, n: int) -> list[JournalEntry]:
    if n <= 0:
        return []
    rows = query(f"SELECT {', '.join(_COLUMNS)} FROM commands ORDER BY seq DESC LIMIT ?", (n,))
    return rows[::-1]


def read_tail(path: str | Path, n: int = 20) -> list[JournalEntry]:
    """The last ``n`` entries of the journal at ``path``, opened read-only (the daemon may be running)."""
    path = Path(path)
    if not path.exists():
        raise JournalError(f"{path}: no command journal here (has the gateway run with this state_dir?)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as err:
        raise JournalError(f"{path}: cannot open the command journal: {err}") from err
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(commands)").fetchall()}
        columns = ", ".join(c if c in present else "''" for c in _COLUMNS)  # an older journal lacks some

        def query(sql: str, args: tuple = ()) -> list[JournalEntry]:
            return [_entry(row) for row in db.execute(sql.replace(", ".join(_COLUMNS), columns), args).fetchall()]
        return _tail(query, n)
    except sqlite3.Error as err:
        raise JournalError(f"{path}: cannot read the command journal: {err}") from err
    finally:
        db.close()


def tail_text(state_dir: str | Path, n: int = 20, as_json: bool = False,
              file_name: str = "commands.sqlite3") -> str:
    """What ``bessgw journal tail [-n N] [--json]`` prints: one line per entry, oldest first.

    With ``as_json`` every line is one JSON object (JSON Lines), for ``jq`` and log shippers.
    """
    entries = read_tail(Path(state_dir) / file_name, n)
    if as_json:
        return "\n".join(json.dumps(entry.as_dict(), sort_keys=True) for entry in entries)
    return "\n".join(entry.as_line() for entry in entries)


def migrate_state_dir(state_dir: str | Path, journal_file: str = "commands.sqlite3") -> tuple[int, int]:
    """Bring a state directory of an older release to this release's layout, in place; returns
    ``(found, now)``.

    Idempotent and safe to interrupt: the journal migrates inside one SQLite transaction, and the version
    marker is written (atomically) only after it. A directory of a newer release raises
    :class:`~bessgw.config.state_version.StateVersionProblem` before anything is opened; a journal of a
    newer schema raises :class:`JournalError`.
    """
    state_dir = Path(state_dir)
    found = read_state_version(state_dir)
    if found == STATE_VERSION:
        return found, found
    state_dir.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
    Journal(state_dir / journal_file).close()  # layout 1 -> 2: the journal at schema 2 (schema 1 migrates)
    try:
        write_state_version(state_dir, STATE_VERSION)
    except OSError as err:
        raise JournalError(f"{state_dir}: cannot record the state directory version: {err}") from err
    return found, STATE_VERSION
