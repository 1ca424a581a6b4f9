"""The version of a gateway's state directory: which layout the files in ``gateway.state_dir`` follow.

A gateway keeps state across restarts (command journal, boot counter, certificates). A release must know
whether a state directory was written by itself, by an older release (migrate it in place, then record
the new version) or by a newer one (refuse to start: misreading it could lose acknowledged commands).
The version is one decimal number in ``<state_dir>/state-version``, replaced atomically and fsync'd.

Layouts: 1 is release 0.2.0's (and 0.1.0's), which has no marker file; 2 (release 0.3.0) adds the
marker, and its journal is at schema 2. The migration itself (journal schema) belongs to the control
layer (:func:`bessgw.control.journal.migrate_state_dir`); this module only reads and writes the number,
so that ``check-config`` can refuse a newer directory without opening anything.
"""

from __future__ import annotations

from pathlib import Path

from bessgw.durable import write_atomically

#: the marker file inside the state directory
STATE_VERSION_FILE = "state-version"
#: the layout this release writes
STATE_VERSION = 2
#: the oldest layout this release migrates from (release 0.1.0's and 0.2.0's: no marker)
OLDEST_STATE_VERSION = 1
_MAX_FILE_BYTES = 32


class StateVersionProblem(Exception):
    """The state directory's version cannot be used by this release; the message is one line for people."""


def read_state_version(state_dir: Path) -> int:
    """The layout version of ``state_dir`` (1 when it has no marker: a release-0.2.0 or a new directory).

    Raises :class:`StateVersionProblem` for a directory written by a newer release, or a marker that is
    not one of ours (a garbled marker is not guessed at: that would be misreading the state).
    """
    path = Path(state_dir) / STATE_VERSION_FILE
    try:
        with path.open("rb") as file:
            data = file.read(_MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return OLDEST_STATE_VERSION
    except OSError as err:
        raise StateVersionProblem(f"{path}: cannot read the state directory version ({err.strerror or err})") from err
    try:
        if len(data) > _MAX_FILE_BYTES:
            raise ValueError
        version = int(data.decode("ascii").strip())
        if version < 1:
            raise ValueError
    except (UnicodeDecodeError, ValueError):
        raise StateVersionProblem(f"{path}: not a state directory version (expected one number like "
                                  f"{STATE_VERSION}); restore it from a backup or remove it if the directory "
                                  "was written by release 0.2.0") from None
    if version > STATE_VERSION:
        raise StateVersionProblem(f"{path.parent}: state directory version {version} was written by a newer bessgw "
                                  f"release; this release ({STATE_VERSION}) cannot read it: run the newer release "
                                  "(downgrades need a state directory backed up before the upgrade)")
    return version


def write_state_version(state_dir: Path, version: int = STATE_VERSION) -> None:
    """Record ``version`` durably: a temporary file fsync'd, renamed over the marker, the directory fsync'd."""
    write_atomically(Path(state_dir) / STATE_VERSION_FILE, f"{version}\n", mode=0o640)
