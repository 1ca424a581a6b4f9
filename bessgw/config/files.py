"""Reading the small files a config names (the config itself, key files, certificates, passwords).

A config may name anything: a FIFO (``open()`` would block until a writer comes), a device such as
``/dev/zero`` (``read()`` would fill memory), a directory, a path with a NUL byte. Every read of such a
file goes through :func:`read_bounded`, which refuses what is not a regular file without blocking and
reads at most ``max_bytes``; its :class:`FileProblem` message is what comes after ``file: key.path:``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: a config file larger than this is refused (a real one is a few KiB)
MAX_CONFIG_BYTES = 4 * 1024 * 1024
#: key files, passwords (a campus key ring of a few lines)
MAX_SECRET_BYTES = 64 * 1024
#: one certificate or private key, DER or PEM
MAX_CERTIFICATE_BYTES = 1024 * 1024


class FileProblem(ValueError):
    """A named file cannot be used: ``str()`` is ``path: reason`` in words a site engineer acts on."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path).replace("\x00", "\\x00")
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_path_text(path: str | os.PathLike[str]) -> None:
    """Refuse what no system call accepts (a NUL byte), before any call raises ``ValueError`` on it."""
    if "\x00" in os.fspath(path):
        raise FileProblem(path, "the path contains a NUL byte")


def read_bounded(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The content of the regular file ``path``, at most ``max_bytes``; :class:`FileProblem` otherwise.

    Opens with ``O_NONBLOCK`` so a FIFO does not block, then checks the opened file (no race between a
    check and the open) and reads one byte more than allowed to tell "too large" from "exactly full".
    """
    check_path_text(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise FileProblem(path, f"cannot read: {err.strerror or err}") from err
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FileProblem(path, f"{_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise FileProblem(path, f"{info.st_size} bytes, more than the {max_bytes} expected")
        chunks: list[bytes] = []
        remaining = max_bytes + 1
        while remaining > 0:
            try:
                chunk = os.read(fd, min(remaining, 65536))
            except OSError as err:
                if err.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise FileProblem(path, "reading would block; not a regular file") from err
                raise FileProblem(path, f"cannot read: {err.strerror or err}") from err
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise FileProblem(path, f"more than the {max_bytes} bytes expected")
        return data
    finally:
        os.close(fd)


def regular_file_or_absent(path: Path) -> str | None:
    """``None`` when ``path`` is absent or a regular file, otherwise why not (for a file we will create)."""
    check_path_text(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot inspect: {err.strerror or err}"
    return None if stat.S_ISREG(info.st_mode) else f"{_kind(info.st_mode)}, not a regular file"
