"""The local admin socket: how ``bessgw status``, ``setpoint``, ``release`` and ``members`` reach a
running gateway.

A UNIX stream socket ``admin.sock`` in the gateway's state directory (mode 0660 inside the 0750
``StateDirectory``: only root and the bessgw group can connect). One JSON object per line each way:
the client sends ``{"cmd": "status"}`` and reads one reply, ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. Requests are bounded in size and time; a malformed request gets an
error reply and never disturbs the gateway. ``setpoint`` is the *local operator override* setpoint
source of the control plane, journaled like every command, with the caller's user name (from the
socket's peer credentials) as the principal.

The protocol is versioned so that the ``bessgw`` command of one release works against the gateway of the
previous one, and says clearly when it cannot. A request carries the client's range, ``"v"`` (the
version it prefers) and ``"vmin"`` (the oldest it reads); release 0.2.0's client sent neither, which
means version 1. The gateway answers in the highest version both read and says which (``"v"``, plus its
``"release"``), or refuses with an error naming both ranges (exit code 70). Release 0.2.0's gateway
ignores the fields and answers without ``"v"``: a version-1 reply, which this client still reads.
Unknown request fields are ignored (optional), except those whose name starts with ``!`` (required):
those are refused. Version 2 adds nothing to the replies' fields but ``v`` and ``release``; fields are
only ever added, so a client reads any reply of a version within its range.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pwd
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bessgw import __version__
from bessgw.throttle import LogThrottle

SOCKET_NAME = "admin.sock"
#: admin protocol versions this release speaks (release 0.2.0: 1, implicitly)
ADMIN_MIN = 1
ADMIN_CURRENT = 2
ADMIN_MAX = 2
#: request fields starting with this must be understood by the gateway, or the request is refused
REQUIRED_PREFIX = "!"
MAX_REQUEST_BYTES = 16 * 1024
#: a request is a flat object; a little nesting is allowed for future options, no more
MAX_REQUEST_DEPTH = 8
REQUEST_TIMEOUT_S = 5.0
#: connections still waiting for their request line; over it the oldest of them is closed. A local flood
#: of idle connections otherwise held one descriptor each for REQUEST_TIMEOUT_S, until the whole gateway
#: ran out (EMFILE: journal, device links and every accept failed, with thousands of error lines)
MAX_PENDING_CONNECTIONS = 64
#: at most one log line per this interval says how many connections were dropped
DROP_LOG_INTERVAL_S = 10.0
#: a state directory we create: owner and group (the bessgw group) only, as systemd's StateDirectoryMode
STATE_DIR_MODE = 0o750


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of the socket (from SO_PEERCRED)."""

    pid: int
    uid: int
    user: str


Handler = Callable[[dict[str, Any], Peer], Awaitable[dict[str, Any]]]


class AdminError(Exception):
    """A request the gateway refuses; the message goes back to the client as ``error``, and ``exit_code``
    (when set) as ``exit_code``, for the CLI to exit with."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def socket_path(state_dir: Path) -> Path:
    """Where a gateway with ``state_dir`` listens."""
    return Path(state_dir) / SOCKET_NAME


def _peer(sock: socket.socket | None) -> Peer:
    if sock is None:
        return Peer(0, -1, "unknown")
    try:
        data = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, _gid = struct.unpack("3i", data)
    except OSError:
        return Peer(0, -1, "unknown")
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid{uid}"
    return Peer(pid, uid, user)


class AdminServer:
    """Serves the admin socket until cancelled; handlers are registered by command name."""

    def __init__(self, path: Path, handlers: dict[str, Handler], log: Any) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self.log = log
        self.requests = 0
        self.rejected = 0
        self._drops = LogThrottle(DROP_LOG_INTERVAL_S)  # connections closed before their request line
        #: the connections still waiting for a request line, oldest first (dicts keep insertion order)
        self._pending: dict[asyncio.StreamWriter, None] = {}
        self.started = asyncio.Event()  #: set once the socket accepts requests

    @property
    def dropped(self) -> int:
        """Connections closed before their request line, because too many were waiting."""
        return self._drops.total

    async def run(self) -> None:
        self.path.parent.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket from a crashed run
        server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_REQUEST_BYTES)
        os.chmod(self.path, 0o660)
        self.started.set()
        try:
            async with server:
                await server.serve_forever()
        finally:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        """Count ``writer`` among the connections waiting for a request; over the bound close the oldest
        (its handler then reads end-of-file and ends without an answer)."""
        self._pending[writer] = None
        closed = 0
        while len(self._pending) > MAX_PENDING_CONNECTIONS:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            oldest.close()
            closed += 1
        reported = self._drops.count(closed)
        if reported:
            self.log.warning("admin_connections_dropped", dropped=reported, total=self.dropped,
                             max_pending=MAX_PENDING_CONNECTIONS)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._admit(writer)
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
            except (asyncio.LimitOverrunError, ValueError):
                self.rejected += 1
                reply = {"ok": False, "error": f"request larger than {MAX_REQUEST_BYTES} bytes"}
            except (asyncio.TimeoutError, TimeoutError):
                self.rejected += 1
                reply = {"ok": False, "error": "request timed out"}
            else:
                if writer not in self._pending:  # dropped for newer connections: closed already
                    return
                del self._pending[writer]  # a request is in: answered, never dropped for newer connections
                peer = _peer(writer.get_extra_info("socket"))
                try:
                    reply = await asyncio.wait_for(self._answer(line, peer), REQUEST_TIMEOUT_S)
                except (asyncio.TimeoutError, TimeoutError):
                    reply = {"ok": False, "error": f"no answer within {REQUEST_TIMEOUT_S:g} s"}
            writer.write(_encode_reply(reply))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (ConnectionError, asyncio.TimeoutError, TimeoutError):
            pass
        finally:
            self._pending.pop(writer, None)
            writer.close()

    async def _answer(self, line: bytes, peer: Peer) -> dict[str, Any]:
        self.requests += 1
        try:
            request = decode_request(line)
        except AdminError as err:
            self.rejected += 1
            return {"ok": False, "error": str(err)}
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            self.rejected += 1
            return {"ok": False, "error": 'request needs a "cmd" string'}
        try:
            version = negotiate(request)
        except AdminError as err:
            self.rejected += 1
            return {"ok": False, "error": str(err), "exit_code": err.exit_code, "v": ADMIN_MAX,
                    "release": __version__}
        if version == 1:
            return await self._dispatch(request, peer)  # release 0.2.0's client: its reply, unchanged
        return {**await self._dispatch(request, peer), "v": version, "release": __version__}

    async def _dispatch(self, request: dict[str, Any], peer: Peer) -> dict[str, Any]:
        handler = self.handlers.get(request["cmd"])
        if handler is None:
            self.rejected += 1
            known = ", ".join(sorted(self.handlers))
            return {"ok": False, "error": f"unknown command {request['cmd']!r} (this gateway knows: {known})"}
        try:
            return {"ok": True, **await handler(request, peer)}
        except AdminError as err:
            reply: dict[str, Any] = {"ok": False, "error": str(err)}
            if err.exit_code is not None:
                reply["exit_code"] = err.exit_code
            return reply
        except Exception as err:  # a handler bug answers with an error; the gateway runs on
            self.log.error("admin_handler_failed", cmd=request["cmd"], error=f"{type(err).__name__}: {err}",
                           exc_info=True)
            return {"ok": False, "error": f"internal error: {type(err).__name__}"}


def negotiate(request: dict[str, Any]) -> int:
    """The protocol version to answer ``request`` in, or ``AdminError`` (exit 70) saying why none."""
    wanted, oldest = request.get("v", 1), request.get("vmin", request.get("v", 1))
    for value in (wanted, oldest):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 255:
            raise AdminError(f'request fields "v" and "vmin" must be protocol versions 1..255 (got {value!r:.20})',
                             70)
    version = min(wanted, ADMIN_CURRENT)
    if version < max(oldest, ADMIN_MIN) or oldest > wanted:
        raise AdminError(f"this gateway (bessgw {__version__}) speaks admin protocol {ADMIN_MIN}..{ADMIN_MAX}, the "
                         f"client {oldest}..{wanted}: use the bessgw command of the gateway's release", 70)
    required = sorted(k for k in request if k.startswith(REQUIRED_PREFIX))
    if required:
        raise AdminError(f"this gateway (bessgw {__version__}) does not understand the required request fields "
                         f"{required[:5]}: use the bessgw command of the gateway's release", 70)
    return version


def reply_version(reply: dict[str, Any]) -> int:
    """The protocol version of a gateway's ``reply`` (none: 1, release 0.2.0), or ``AdminError`` if this
    client cannot read it."""
    version = reply.get("v", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not ADMIN_MIN <= version <= ADMIN_MAX:
        release = reply.get("release", "?")
        raise AdminError(f"the gateway (bessgw {release}) answered in admin protocol {version!r:.20}, this bessgw "
                         f"command ({__version__}) reads {ADMIN_MIN}..{ADMIN_MAX}: use the command of the "
                         "gateway's release", 70)
    return version


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (iterative: a hostile request cannot overflow it)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, depth)
            if depth <= MAX_REQUEST_DEPTH:  # deeper than that is refused anyway: stop counting
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def decode_request(line: bytes) -> Any:
    """One request line -> the JSON value; ``AdminError`` saying what is wrong with it otherwise.

    Bounded: the line is at most ``MAX_REQUEST_BYTES`` (the reader's limit), nesting deeper than
    ``MAX_REQUEST_DEPTH`` is refused (json's recursion would otherwise end in ``RecursionError``),
    and integers longer than Python's digit limit are a ``ValueError`` of json itself.
    """
    try:
        request = json.loads(line)
    except RecursionError:
        raise AdminError(f"request nested deeper than {MAX_REQUEST_DEPTH} levels") from None
    except ValueError:  # also UnicodeDecodeError and over-long integers
        raise AdminError("request is not one JSON object on one line") from None
    if _depth(request) > MAX_REQUEST_DEPTH:
        raise AdminError(f"request nested deeper than {MAX_REQUEST_DEPTH} levels")
    return request


def _encode_reply(reply: dict[str, Any]) -> bytes:
    """The reply line; a reply that is not valid JSON (a NaN, an unencodable value) becomes an error reply."""
    try:
        return json.dumps(reply, allow_nan=False, default=str).encode() + b"\n"
    except (ValueError, TypeError, RecursionError):
        return json.dumps({"ok": False, "error": "the reply could not be encoded as JSON"}).encode() + b"\n"


def request(path: Path, payload: dict[str, Any], timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
    """Client side (blocking): send one request with our protocol range, return the reply (check it with
    :func:`reply_version`); ``OSError`` if nobody listens."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps({**payload, "v": ADMIN_CURRENT, "vmin": ADMIN_MIN}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if chunk.endswith(b"\n"):
                break
    return json.loads(b"".join(chunks))
