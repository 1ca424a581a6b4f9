"""Boot numbers: every start of a gateway gets a number larger than any it had before.

A boot number names one life of a gateway. It is its state *generation* (a restarted owner's state
replaces the old one everywhere) and its *epoch* on the wire: every datagram carries the sender's boot and
the boot of the receiver it is meant for, which is what makes replays refusable after either side restarts
(see :mod:`bessgw.federation.replay`). Both uses need boot numbers that only grow and are never reused.

The number is the start time in tenths of a second since 2024 (so numbers stay comparable with older
releases and fit 5 msgpack bytes until 2037), raised above the last one recorded in
``<state_dir>/federation-boot`` when the gateway has a state directory: a clock stepped back across a
restart, or two starts within the same tenth of a second, still give a new, larger number. The file is
replaced atomically and fsync'd before the node sends anything. Without a state directory (in-process test
nodes) the clock alone decides.
"""

from __future__ import annotations

from pathlib import Path

from bessgw.durable import write_atomically
from bessgw.errors import ConfigError

#: boots are counted in tenths of a second since 2024-01-01 UTC
BOOT_EPOCH_S = 1_704_067_200
#: the counter file inside the gateway's state directory
BOOT_FILE = "federation-boot"
#: a counter file is one decimal number; anything longer is not ours
_MAX_FILE_BYTES = 32


def boot_stamp(now_s: float) -> int:
    """The clock's boot number for a start at wall-clock ``now_s`` (at least 1: 0 means "unknown")."""
    return max(1, int((now_s - BOOT_EPOCH_S) * 10))


def next_boot(now_s: float, state_dir: Path | None = None) -> int:
    """This start's boot number: the clock's, or one more than the last recorded if that is larger.

    With ``state_dir`` the number is recorded durably before it is returned. An unreadable or garbled
    counter file is ignored (the clock still orders boots while NTP keeps it right) and rewritten; a
    counter that cannot be written is a :class:`ConfigError` naming the state directory, since a gateway
    that cannot promise a new epoch must not gossip.
    """
    boot = boot_stamp(now_s)
    if state_dir is None:
        return boot
    path = state_dir / BOOT_FILE
    last = _read_counter(path)
    if last is not None:
        boot = max(boot, last + 1)
    _write_counter(path, boot)
    return boot


def _read_counter(path: Path) -> int | None:
    try:
        if not path.is_file():
            if path.exists() or path.is_symlink():
                raise ConfigError(str(path), [f"{path}: gateway.state_dir: {BOOT_FILE} is not a regular file"])
            return None
        with path.open("rb") as file:
            text = file.read(_MAX_FILE_BYTES + 1)
    except OSError:
        return None
    if len(text) > _MAX_FILE_BYTES:
        return None
    try:
        value = int(text.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
    return value if value > 0 else None


def _write_counter(path: Path, boot: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, f"{boot}\n", mode=0o600)
    except OSError as err:
        raise ConfigError(str(path), [f"{path}: gateway.state_dir: cannot record the federation boot number "
                                      f"({err.strerror or err})"]) from err
