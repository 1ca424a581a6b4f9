"""Pre-flight: what can be known about a valid config before the gateway starts, checked at once.

The schema says a value is well-formed; pre-flight says the gateway can run with it here: the state
directory is usable, the files named are regular, readable and of sane size, the ports to listen on are
free, and the timeouts cannot show data as Good beyond its age limits. ``bessgw check-config`` prints
these lines, ``bessgw run`` refuses to start on any of them (exit 78): a gateway must never run without
a part it was configured to have. Every line reads ``file: key.path: message``.

:func:`timing_problems` is pure (no I/O) so that a reload can apply it too.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bessgw.config.files import (
    MAX_CERTIFICATE_BYTES,
    MAX_SECRET_BYTES,
    FileProblem,
    check_path_text,
    read_bounded,
    regular_file_or_absent,
)
from bessgw.config.schema import Config
from bessgw.config.state_version import StateVersionProblem, read_state_version

#: the admin socket's name in the state directory (``bessgw.admin.SOCKET_NAME``; config cannot import it)
ADMIN_SOCKET_NAME = "admin.sock"
#: longest path a UNIX socket can bind (sun_path is 108 bytes with the terminating NUL)
MAX_UNIX_SOCKET_PATH = 107
#: bound on resolving a listen host name (DNS) before probing its port
RESOLVE_TIMEOUT_S = 3.0
#: certificate files in a trust list directory that are looked at (a trust list holds a handful)
MAX_TRUSTED_ENTRIES = 10_000
_CERT_SUFFIXES = frozenset({".der", ".pem", ".crt", ".cer"})


@dataclass(frozen=True)
class Preflight:
    """The outcome: ``problems`` (each one stops the gateway) and ``skipped`` (what was not checked, why)."""

    problems: tuple[str, ...]
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight(config: Config, path: str, *, skip_files: bool = False, starting: bool = False) -> Preflight:
    """Check ``config`` (loaded from ``path``) against this machine.

    ``skip_files``: the config is meant for another machine; the files it names, the state directory and
    the ports are not looked at here, and ``skipped`` says which. ``starting``: ``bessgw run`` is about to
    use the state directory, so a gateway already answering on it is a problem, not just a reason to skip
    the port checks.
    """
    problems = timing_problems(config, path) + _listener_clash_problems(config, path)
    skipped: list[str] = []
    if skip_files:
        skipped.append(f"gateway.state_dir: {config.gateway.state_dir} (not inspected: --skip-files)")
        skipped += [f"{key}: {file} (not read: --skip-files)" for key, file, _limit in _named_files(config)]
        skipped += [f"{key}: {where} (not probed: --skip-files)" for key, where in _listen_addresses(config)]
        return Preflight(tuple(problems), tuple(skipped))
    problems += _state_dir_problems(config, path)
    problems += _file_problems(config, path)
    running = _gateway_running(config.gateway.state_dir)
    if running and starting:
        problems.append(f"{path}: gateway.state_dir: a gateway is already running with {config.gateway.state_dir}"
                        f" (its {ADMIN_SOCKET_NAME} answers); stop it first")
    elif running:
        skipped += [f"{key}: {where} (not probed: the gateway running with this state_dir holds it)"
                    for key, where in _listen_addresses(config)]
    else:
        problems += _port_problems(config, path)
    return Preflight(tuple(problems), tuple(skipped))


# ------------------------------------------------------------------------------------ timing


def timing_problems(config: Config, path: str) -> list[str]:
    """Timeout combinations that break the stale/bad age limits (pure; no I/O).

    A unit's data is refreshed by a read every ``poll_interval_s``; a frozen device is found out only when
    the read that should refresh it fails, which takes up to the transport's request timeout. So:

    * ``poll_interval_s < stale_after_s``: otherwise healthy data turns stale between two polls;
    * ``poll_interval_s + <detection time> <= bad_after_s``: a frozen device is known to be down before its
      last data is bad (``request_timeout_s`` for Modbus, keep-alive + request for OPC UA, the frame
      timeout for CAN). With ``request_timeout_s = 10`` and ``bad_after_s = 6`` it was not.
    """
    problems: list[str] = []
    seen: set[str] = set()

    def add(line: str) -> None:
        if line not in seen:
            seen.add(line)
            problems.append(line)

    south = config.southbound
    for index, unit in enumerate(config.units):
        if not unit.enabled:
            continue
        timing = config.unit_timing(unit)

        def key(name: str, index: int = index, unit=unit) -> str:  # type: ignore[no-untyped-def]
            return f"units[{index}].{name}" if getattr(unit, name) is not None else f"defaults.{name}"

        if timing.poll_interval_s >= timing.stale_after_s:
            add(f"{path}: {key('poll_interval_s')}: {timing.poll_interval_s:g} s must be shorter than "
                f"{key('stale_after_s')} ({timing.stale_after_s:g} s), or healthy data turns stale between polls")
        detections: list[tuple[str, float, str]] = []
        if unit.modbus is not None:
            detections.append(("southbound.modbus.request_timeout_s", south.modbus.request_timeout_s,
                                "request_timeout_s"))
        if unit.opcua is not None:
            detections.append(("southbound.opcua.keepalive_interval_s",
                               south.opcua.keepalive_interval_s + south.opcua.request_timeout_s,
                               "keepalive_interval_s + request_timeout_s"))
            publish_s = unit.opcua.publish_interval_s or south.opcua.publish_interval_s
            if publish_s >= timing.stale_after_s:
                where = (f"units[{index}].opcua.publish_interval_s" if unit.opcua.publish_interval_s is not None
                         else "southbound.opcua.publish_interval_s")
                add(f"{path}: {where}: {publish_s:g} s must be shorter than {key('stale_after_s')} "
                    f"({timing.stale_after_s:g} s) of units[{index}] ({unit.id})")
        if unit.can is not None and unit.can.frame_timeout_s is not None:
            detections.append((f"units[{index}].can.frame_timeout_s", unit.can.frame_timeout_s, "frame_timeout_s"))
        for where, detect_s, what in detections:
            if timing.poll_interval_s + detect_s > timing.bad_after_s:
                add(f"{path}: {where}: {what} ({detect_s:g} s) plus {key('poll_interval_s')} "
                    f"({timing.poll_interval_s:g} s) exceeds {key('bad_after_s')} ({timing.bad_after_s:g} s) "
                    f"of units[{index}] ({unit.id}): a frozen device would be found out only after its data "
                    "is bad; shorten the timeout or raise bad_after_s")
    control = config.control
    if control.ramp_to_zero_on_stop and control.stop_timeout_s > config.gateway.shutdown_grace_s:
        problems.append(f"{path}: control.stop_timeout_s: {control.stop_timeout_s:g} s must not exceed "
                        f"gateway.shutdown_grace_s ({config.gateway.shutdown_grace_s:g} s), or the ramp to 0 kW "
                        "at stop is cut off")
    return problems


# ------------------------------------------------------------------------------- state dir


def _state_dir_problems(config: Config, path: str) -> list[str]:
    state_dir = config.gateway.state_dir
    where = f"{path}: gateway.state_dir"
    try:
        check_path_text(state_dir)
    except FileProblem as err:
        return [f"{where}: {err}"]
    problem = _usable_dir(state_dir)
    if problem is not None:
        return [f"{where}: {problem}"]
    try:
        read_state_version(state_dir)  # written by a newer release: refused before anything reads it
    except StateVersionProblem as err:
        return [f"{where}: {err}"]
    admin_socket = os.fsencode(state_dir / ADMIN_SOCKET_NAME)
    if len(admin_socket) > MAX_UNIX_SOCKET_PATH:
        return [f"{where}: {state_dir} is too long: the admin socket path would be {len(admin_socket)} bytes, "
                f"more than the {MAX_UNIX_SOCKET_PATH} a UNIX socket allows"]
    journal = state_dir / config.control.journal_file
    journal_problem = regular_file_or_absent(journal)
    if journal_problem is None and journal.parent != state_dir:
        journal_problem = _usable_dir(journal.parent)
    if journal_problem is None and journal.exists() and not os.access(journal, os.R_OK | os.W_OK):
        journal_problem = "not readable and writable by this user"
    if journal_problem is None and journal.exists():
        journal_problem = _not_a_journal(journal)
    if journal_problem is not None:
        return [f"{path}: control.journal_file: {journal}: {journal_problem}"]
    return []


#: the first bytes of every SQLite 3 database file
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _not_a_journal(journal: Path) -> str | None:
    """Why the existing file ``journal`` is no command journal, or ``None``. An empty file is one SQLite
    initialises; anything else must start as a SQLite database (a garbage file passed check-config, and
    run then stopped with 'cannot open the command journal: file is not a database', exit 70)."""
    try:
        with open(journal, "rb") as file:
            head = file.read(len(_SQLITE_MAGIC))
    except OSError as err:
        return f"cannot read: {err.strerror or err}"
    if head and head != _SQLITE_MAGIC:
        return ("not a SQLite database, so not a command journal (move it away: the gateway starts a new one, "
                "or restore it from a backup)")
    return None


def _usable_dir(directory: Path) -> str | None:
    """``None`` if ``directory`` is a writable directory or can be created; otherwise why not.

    Writability is tried, not derived from mode bits (root passes ``access()`` on a read-only mount or
    on ``/proc``): an empty directory is created in the nearest existing ancestor and removed again.
    """
    probe = directory
    while True:
        try:
            info = os.stat(probe)
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                return f"{directory}: no existing parent directory"
            probe = probe.parent
            continue
        except OSError as err:
            return f"{probe}: cannot inspect: {err.strerror or err}"
        break
    if not stat.S_ISDIR(info.st_mode):
        return f"{probe} is not a directory"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".bessgw-preflight-", dir=probe))
    except OSError as err:
        verb = "is not writable" if probe == directory else f"cannot be created (in {probe})"
        return f"{directory} {verb}: {err.strerror or err}"
    return None


# ----------------------------------------------------------------------------------- files


def _named_files(config: Config) -> Iterator[tuple[str, Path, int]]:
    """Every file the config names that the gateway reads: (key path, file, size limit)."""
    federation = config.federation
    if federation is not None and federation.enabled and federation.key_file is not None:
        yield "federation.key_file", federation.key_file, MAX_SECRET_BYTES
    north = config.northbound.opcua
    if north.enabled:
        if north.certificate_path is not None and north.private_key_path is not None:
            yield "northbound.opcua.certificate_path", north.certificate_path, MAX_CERTIFICATE_BYTES
            yield "northbound.opcua.private_key_path", north.private_key_path, MAX_CERTIFICATE_BYTES
        trusted = (north.pki_dir or config.gateway.state_dir / "pki") / "trusted"
        for entry in _trusted_entries(trusted):
            yield "northbound.opcua.pki_dir", entry, MAX_CERTIFICATE_BYTES
    units = [(index, unit) for index, unit in enumerate(config.units) if unit.enabled and unit.opcua is not None]
    south = config.southbound.opcua
    if units and south.certificate_path is not None and south.private_key_path is not None:
        yield "southbound.opcua.certificate_path", south.certificate_path, MAX_CERTIFICATE_BYTES
        yield "southbound.opcua.private_key_path", south.private_key_path, MAX_CERTIFICATE_BYTES
    for index, unit in units:
        assert unit.opcua is not None
        if unit.opcua.password_file is not None:
            yield f"units[{index}].opcua.password_file", unit.opcua.password_file, MAX_SECRET_BYTES
        if unit.opcua.server_certificate_path is not None:
            yield (f"units[{index}].opcua.server_certificate_path", unit.opcua.server_certificate_path,
                   MAX_CERTIFICATE_BYTES)


def _trusted_entries(trusted: Path) -> list[Path]:
    """Certificate files in a trust list directory (an absent directory is created at start: none)."""
    try:
        check_path_text(trusted)
        with os.scandir(trusted) as entries:
            found = []
            for entry in entries:
                if Path(entry.name).suffix.lower() in _CERT_SUFFIXES:
                    found.append(Path(entry.path))
                if len(found) >= MAX_TRUSTED_ENTRIES:
                    break
            return sorted(found)
    except (OSError, FileProblem):
        return []


def _file_problems(config: Config, path: str) -> list[str]:
    problems = []
    north = config.northbound.opcua
    if north.enabled and north.pki_dir is not None:
        problem = _usable_dir(north.pki_dir)
        if problem is not None:
            problems.append(f"{path}: northbound.opcua.pki_dir: {problem}")
    for key, file, limit in _named_files(config):
        try:
            data = read_bounded(file, limit)
        except FileProblem as err:
            problems.append(f"{path}: {key}: {err}")
            continue
        if not data.strip():
            problems.append(f"{path}: {key}: {file}: the file is empty")
            continue
        problem = _content_problem(key, data)
        if problem is not None:
            problems.append(f"{path}: {key}: {file}: {problem}")
    return problems


def _content_problem(key: str, data: bytes) -> str | None:
    """Certificates and keys must parse (DER or PEM), as the OPC UA stack will load them at start."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key

    if key.endswith("private_key_path"):
        loaders = (load_pem_private_key, load_der_private_key)
        what = "a private key (PEM or DER, unencrypted)"
        for loader in loaders:
            try:
                loader(data, password=None)
                return None
            except (ValueError, TypeError, x509.UnsupportedGeneralNameType):
                continue
        return f"not {what}"
    if key.endswith(("certificate_path", "pki_dir")):
        for load in (x509.load_der_x509_certificate, x509.load_pem_x509_certificate):
            try:
                load(data)
                return None
            except ValueError:
                continue
        return "not an X.509 certificate (DER or PEM)"
    return None


# ----------------------------------------------------------------------------------- ports


def _tcp_listeners(config: Config) -> Iterator[tuple[str, str, int]]:
    """``(key, host, port)`` of every TCP listener the config asks for."""
    north = config.northbound.opcua
    if north.enabled:
        host, port = north.listen_host_port
        yield "northbound.opcua.endpoint", host, port
    if config.http is not None:
        yield "http.listen", config.http.host, config.http.port


def _listen_addresses(config: Config) -> Iterator[tuple[str, str]]:
    for key, host, port in _tcp_listeners(config):
        yield key, f"TCP {host}:{port}"
    federation = config.federation
    if federation is not None and federation.enabled:
        yield "federation.bind_port", f"UDP {federation.bind_host}:{federation.bind_port}"


#: host parts that listen on every address of the machine
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def _listener_clash_problems(config: Config, path: str) -> list[str]:
    """Two TCP listeners of this config on one port (same host, or either on every address): each probe
    alone finds the port free, and the second service failed at start, after the units had started
    (pure; no I/O)."""
    listeners = [(key, host, port) for key, host, port in _tcp_listeners(config) if port != 0]
    problems = []
    for index, (key, host, port) in enumerate(listeners):
        for other_key, other_host, other_port in listeners[:index]:
            if port == other_port and (host == other_host or {host, other_host} & _WILDCARD_HOSTS):
                problems.append(f"{path}: {key}: TCP port {port} is also {other_key}'s: give each its own port")
    return problems


def _port_problems(config: Config, path: str) -> list[str]:
    problems = []
    for key, host, port in _tcp_listeners(config):
        problem = _bind_problem(host, port, socket.SOCK_STREAM)
        if problem is not None:
            problems.append(f"{path}: {key}: {problem}")
    federation = config.federation
    if federation is not None and federation.enabled:
        problem = _bind_problem(federation.bind_host, federation.bind_port, socket.SOCK_DGRAM)
        if problem is not None:
            key = "federation.bind_port" if problem.startswith(("port", "UDP")) else "federation.bind_host"
            problems.append(f"{path}: {key}: {problem}")
    return problems


def _resolve(host: str, port: int, kind: int) -> list[Any]:
    """``getaddrinfo`` bounded in time: a host name needs DNS, and check-config must not hang on it.

    The lookup runs in a daemon thread; one that never returns is abandoned (it ends with the process).
    """
    result: list[Any] = []
    failure: list[BaseException] = []

    def lookup() -> None:
        try:
            result.extend(socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE))
        except BaseException as err:  # handed to the caller below
            failure.append(err)

    thread = threading.Thread(target=lookup, name="preflight-resolve", daemon=True)
    thread.start()
    thread.join(RESOLVE_TIMEOUT_S)
    if thread.is_alive():
        raise TimeoutError(host)
    if failure:
        raise failure[0]
    return result


def _bind_problem(host: str, port: int, kind: int) -> str | None:
    """Bind ``host:port`` as the service will (TCP with SO_REUSEADDR like asyncio servers) and release it.

    Port 0 (any free port) is bound too: the host must still resolve to an address of this machine (with
    ``bind_host = "/"`` and port 0 the gateway started its units and then failed on the federation)."""
    proto = "TCP" if kind == socket.SOCK_STREAM else "UDP"
    try:
        infos = _resolve(host, port, kind)
    except TimeoutError:  # (before OSError, its base class)
        return f"cannot resolve {host!r}: no answer within {RESOLVE_TIMEOUT_S:g} s"
    except (OSError, UnicodeError, ValueError) as err:
        return f"cannot resolve {host!r}: {err}"
    family, socktype, proto_number, _name, address = infos[0]
    try:
        with socket.socket(family, socktype, proto_number) as sock:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            return f"{proto} {host}:{port} is in use by another process"
        if err.errno == errno.EADDRNOTAVAIL:
            return f"{host!r} is not an address of this machine (cannot listen on {proto} {host}:{port})"
        if err.errno == errno.EACCES:
            return f"{proto} port {port} needs privileges this user does not have"
        return f"cannot listen on {proto} {host}:{port}: {err.strerror or err}"
    return None


def _gateway_running(state_dir: Path) -> bool:
    """Whether a gateway answers on the admin socket in ``state_dir`` (a stale socket file does not)."""
    sock_path = state_dir / ADMIN_SOCKET_NAME
    try:
        if not stat.S_ISSOCK(os.stat(sock_path).st_mode):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1.0)
            sock.connect(str(sock_path))
        return True
    except (OSError, ValueError):
        return False
