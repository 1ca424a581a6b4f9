"""Small state files written so that a crash or power cut leaves either the old content or the new one.

The state directory holds a few one-line files (the federation boot counter, the state-directory
version) whose loss or truncation would be unsafe: a boot counter that went back lets captured gossip be
replayed; a half-written version marker would refuse a good state directory. Larger files written as a
whole directory (the OPC UA standard-nodes shelf) use :func:`fsync_path` before their rename. Journal data
lives in SQLite, which has its own durability.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Replace ``path`` with ``text``: a temporary file fsync'd, renamed over it, the directory fsync'd.

    Raises ``OSError``; the caller says which setting the file belongs to.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_path(path.parent)


def fsync_path(path: Path) -> None:
    """Flush ``path`` (a file, or a directory after entries in it were created or renamed) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
