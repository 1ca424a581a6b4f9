"""``bessgw install-service``: the systemd unit files and the sysusers entry for *this* installation.

The unit files ship inside the package (``bessgw/daemon/systemd/``) with ``ExecStart=/usr/bin/bessgw``, the
path a distribution package uses. A venv under ``/opt/bessgw`` (docs/install.md) runs
``/opt/bessgw/bin/bessgw`` instead: the command rewrites the binary's path for the prefix it is given
(default: the prefix of the Python running it) and writes the files where systemd looks for them.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bessgw.errors import InstallError

#: the binary path written in the shipped unit files, replaced by ``<prefix>/bin/bessgw``
SHIPPED_BINARY = "/usr/bin/bessgw"
UNIT_FILES = ("bessgw.service", "bessgw@.service")
#: the shipped sysusers entry and the name it is installed under (``/etc/sysusers.d/bessgw.conf``)
SYSUSERS_FILE, SYSUSERS_NAME = "bessgw.sysusers.conf", "bessgw.conf"
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_SYSUSERS_DIR = Path("/etc/sysusers.d")
#: characters systemd takes literally in ExecStart= (no quoting, no specifiers, no variables)
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")
#: what ProtectHome=yes hides from the service
_PROTECTED_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))


@dataclass(frozen=True)
class InstallFile:
    """One file to write: where, and what."""

    path: Path
    text: str


def shipped(name: str) -> str:
    """The text of a file shipped in ``bessgw/daemon/systemd``."""
    return resources.files("bessgw.daemon").joinpath("systemd", name).read_text(encoding="utf-8")


def default_prefix() -> Path:
    """The prefix of the running installation: ``/opt/bessgw`` for a venv there, ``/usr`` for a package."""
    return Path(sys.prefix)


def binary_for(prefix: Path) -> Path:
    """Where the ``bessgw`` console script of an installation under ``prefix`` lives."""
    return prefix / "bin" / "bessgw"


def check_prefix(prefix: Path, require_binary: bool = True) -> Path:
    """The ``bessgw`` binary under ``prefix``, or :class:`InstallError` saying why a unit could not run it."""
    if not prefix.is_absolute():
        raise InstallError(f"--prefix must be an absolute path (got {str(prefix)!r})")
    binary = binary_for(prefix)
    if not _PLAIN_PATH.match(str(binary)):
        raise InstallError(f"{binary}: use a path of letters, digits and ._/+- only"
                           " (systemd reads ExecStart= literally)")
    if any(prefix == home or home in prefix.parents for home in _PROTECTED_HOMES):
        raise InstallError(f"{prefix}: the unit sets ProtectHome=yes, so it cannot run bessgw from a home"
                           " directory; install into /opt/bessgw (docs/install.md)")
    if require_binary and not os.access(binary, os.X_OK):
        raise InstallError(f"{binary}: no executable bessgw there (is bessgw installed under {prefix}?)")
    return binary


def render(prefix: Path, unit_dir: Path = DEFAULT_UNIT_DIR, sysusers_dir: Path = DEFAULT_SYSUSERS_DIR,
           require_binary: bool = True) -> list[InstallFile]:
    """The unit files (pointing at ``<prefix>/bin/bessgw``) and the sysusers entry, with their destinations."""
    binary = check_prefix(prefix, require_binary)
    files = [InstallFile(unit_dir / name, shipped(name).replace(SHIPPED_BINARY, str(binary))) for name in UNIT_FILES]
    files.append(InstallFile(sysusers_dir / SYSUSERS_NAME, shipped(SYSUSERS_FILE)))
    return files


def write(files: list[InstallFile]) -> None:
    """Write every file (mode 0644, replacing an older version atomically); :class:`InstallError` if it cannot."""
    for item in files:
        temporary = item.path.with_name(f".{item.path.name}.new")
        try:
            item.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(item.text, encoding="utf-8")
            temporary.chmod(0o644)
            temporary.replace(item.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            raise InstallError(f"cannot write {item.path}: {err.strerror or err} (run it as root)") from err


NEXT_STEPS = """next, as root (docs/install.md):
  systemd-sysusers                      # creates the bessgw user and group
  systemctl daemon-reload
  systemctl enable --now bessgw         # once /etc/bessgw/bessgw.toml passes check-config"""
