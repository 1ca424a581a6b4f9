"""Connection slots that clients who never authenticate cannot hold.

asyncua caps connections server-wide only (``max_connections``, checked when a TCP connection is
accepted) and closes connections that have not activated a session after a grace time: a handful of
raw TCP connections, re-opened as soon as they are closed, keeps every operator out. The guard here
adds, per server:

* a bound on **pre-session** connections (accepted, no activated session yet), per source address and
  in total. Over a bound, the least advanced, oldest pre-session connection in that scope is closed to
  make room — never the newcomer, so a client that keeps re-opening silent sockets only ever displaces
  its own earlier ones, and a client that already spoke (HEL) or created a session outlives those
  that did not. (Refusing newcomers instead would let the flood keep its slots: that is the lock-out.)
* a **handshake timeout**: a connection that has not created a session ``handshake_timeout_s`` after it
  was accepted is closed (covers silent sockets and HEL-and-stop); asyncua's own activation watchdog
  closes one that has not activated its session after ``activation_timeout_s``.
* a **reserve for authenticated sessions**: at most ``max_sessions`` activated sessions; pre-session
  connections are counted apart, so they never take those slots. One more activation is refused with
  ``BadTooManySessions``.
* a **reserve for operators**: read-only sessions (anonymous, viewers) get at most ``max_sessions -
  reserved_for_operators`` of those slots, so read-only clients holding every session they can (an
  anonymous flood on an endpoint that allows anonymous reads) still leave room for an operator or admin
  to log in and command. The login's claimed identity decides (an operator name with a wrong password
  is refused by the login itself).

asyncua has no hook for accepted connections; it registers each accepted connection's transport in
``InternalServer.asyncio_transports`` (in ``OPCUAProtocol.connection_made``) and removes it when the
connection is lost. :class:`ConnectionGuard` takes that list's place, so it sees every connection come
and go without forking asyncua. The same registration runs in the connection's context before asyncua
starts the connection's message task, so :func:`current_channel_unsecured` can tell the certificate
validator which channel it is serving (on the None policy the client certificate is not validated).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.security_policies import SecurityPolicyNone

from bessgw.northbound.access import Role
from bessgw.throttle import LogThrottle

#: a connection's progress; lower is evicted first
_CONNECTED, _SPOKE, _CHANNEL, _SESSION = 0, 1, 2, 3
#: at most one eviction summary in the log this often, however hard the endpoint is flooded
_LOG_INTERVAL_S = 10.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The guard's bounds (from ``[northbound.opcua]``)."""

    max_sessions: int
    max_pending: int
    max_pending_per_address: int
    handshake_timeout_s: float
    activation_timeout_s: float
    #: activated-session slots read-only sessions may not take
    reserved_for_operators: int = 0


@dataclass(eq=False)
class _Connection:
    transport: Any
    address: str
    accepted_at: float
    spoke: bool = False
    closed: bool = False
    timer: asyncio.TimerHandle | None = None
    protocol: Any = field(default=None, repr=False)

    @property
    def session(self) -> Any:
        processor = getattr(self.protocol, "processor", None)
        return getattr(processor, "session", None)

    @property
    def channel_open(self) -> bool:
        return _secure_connection(self) is not None and _secure_connection(self).is_open()

    @property
    def activated(self) -> bool:
        session = self.session
        return session is not None and session.is_activated()

    @property
    def stage(self) -> int:
        if self.session is not None:
            return _SESSION
        if self.channel_open:
            return _CHANNEL
        return _SPOKE if self.spoke else _CONNECTED


_current: contextvars.ContextVar[_Connection | None] = contextvars.ContextVar("bessgw_opcua_connection",
                                                                             default=None)


def _secure_connection(connection: _Connection) -> Any:
    """asyncua's ``SecureConnection`` of the connection (its secure channel), if it can be reached."""
    processor = getattr(connection.protocol, "processor", None)
    return getattr(processor, "_connection", None)


def current_channel_unsecured() -> bool:
    """Whether the request being served came over a secure channel with the None security policy.

    False when it cannot be told (outside a connection, or asyncua changed its internals): callers
    then keep the stricter behaviour.
    """
    connection = _current.get()
    if connection is None:
        return False
    return isinstance(getattr(_secure_connection(connection), "security_policy", None), SecurityPolicyNone)


class ConnectionGuard(list):
    """Stands in for ``InternalServer.asyncio_transports``: admits, tracks and closes connections.

    Install with :meth:`install` before the server starts listening.
    """

    def __init__(self, limits: ConnectionLimits, log: Callable[..., None] | None = None,
                 privileged: Callable[[Any], bool] | None = None) -> None:
        """``privileged(params)``: whether an ActivateSession request logs in as operator or admin."""
        super().__init__()
        self.limits = limits
        self._log = log
        self._privileged = privileged
        self._connections: dict[int, _Connection] = {}  # id(transport) -> record
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self.evicted = 0
        self.timed_out = 0
        self.sessions_refused = 0
        self._throttle = LogThrottle(_LOG_INTERVAL_S)

    def install(self, iserver: Any) -> None:
        """Take the place of asyncua's transport list and wrap session creation and activation."""
        iserver.asyncio_transports = self
        # asyncua's own connection cap stays as the hard bound on sockets; ours are tighter, and a burst
        # of newcomers may arrive before the connections evicted for them are gone
        iserver.max_connections = self.limits.max_sessions + 2 * self.limits.max_pending
        iserver.max_pending_activation_seconds = self.limits.activation_timeout_s
        create = iserver.create_session

        def create_session(*args: Any, **kwargs: Any) -> Any:
            session = create(*args, **kwargs)
            self._guard_activation(session)
            return session

        iserver.create_session = create_session

    # ------------------------------------------------------------------ asyncua's list protocol

    def append(self, transport: Any) -> None:  # type: ignore[override]
        super().append(transport)
        self._admit(transport)

    def remove(self, transport: Any) -> None:  # type: ignore[override]
        if transport in self:
            super().remove(transport)
        record = self._connections.pop(id(transport), None)
        if record is not None:
            record.closed = True
            if record.timer is not None:
                record.timer.cancel()

    # ------------------------------------------------------------------------------ admission

    @property
    def pending(self) -> list[_Connection]:
        """Connections without an activated session (and not already being closed)."""
        return [c for c in self._connections.values() if not c.closed and not c.activated]

    def _admit(self, transport: Any) -> None:
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)
        record = _Connection(transport, address, time.monotonic(), protocol=transport.get_protocol())
        self._connections[id(transport)] = record
        _current.set(record)  # inherited by the connection's message task, created right after this
        self._watch_first_bytes(record)
        record.timer = asyncio.get_running_loop().call_later(self.limits.handshake_timeout_s,
                                                             self._handshake_deadline, record)
        pending = self.pending
        same_address = [c for c in pending if c.address == address]
        if len(same_address) > self.limits.max_pending_per_address:
            self._evict(same_address, record, "max_pending_connections_per_address")
            pending = self.pending
        if len(pending) > self.limits.max_pending:
            self._evict(pending, record, "max_pending_connections")

    def _watch_first_bytes(self, record: _Connection) -> None:
        """Mark the connection as having spoken on its first bytes (a HEL, normally)."""
        protocol = record.protocol
        received = getattr(protocol, "data_received", None)
        if received is None:
            return

        def data_received(data: bytes) -> None:
            record.spoke = True
            protocol.data_received = received  # once is enough: back to asyncua's own method
            received(data)

        protocol.data_received = data_received

    def _evict(self, candidates: list[_Connection], newcomer: _Connection, reason: str) -> None:
        others = [c for c in candidates if c is not newcomer]
        if not others:
            return
        victim = min(others, key=lambda c: (c.stage, c.accepted_at))
        self.evicted += 1
        self._close(victim)
        self._summarise(reason=reason, address=victim.address)

    def _handshake_deadline(self, record: _Connection) -> None:
        if record.closed or record.session is not None:
            return
        self.timed_out += 1
        self._close(record)
        self._summarise(reason="handshake_timeout", address=record.address)

    def _close(self, record: _Connection) -> None:
        record.closed = True
        if record.timer is not None:
            record.timer.cancel()
        record.transport.close()

    def _summarise(self, **fields: Any) -> None:
        if self._log is None or not self._throttle.due():
            return
        self._log("opcua_connection_closed", evicted=self.evicted, handshake_timeouts=self.timed_out,
                  sessions_refused=self.sessions_refused, pending=len(self.pending), **fields)

    def active_sessions(self) -> int:
        """Activated sessions now (for metrics)."""
        count = 0
        for session in list(self._sessions):
            try:
                count += bool(session.is_activated())
            except Exception:  # a session asyncua is tearing down
                continue
        return count

    # ------------------------------------------------------------------------------- sessions

    def _guard_activation(self, session: Any) -> None:
        self._sessions.add(session)
        activate = session.activate_session

        def activate_session(*args: Any, **kwargs: Any) -> Any:
            if not session.is_activated():
                active = sum(1 for other in list(self._sessions) if other is not session and other.is_activated())
                if active >= self.limits.max_sessions:
                    self.sessions_refused += 1
                    self._summarise(reason="max_sessions")
                    raise ServiceError(ua.StatusCodes.BadTooManySessions)
                if self._read_only_full(session, args[0] if args else kwargs.get("params")):
                    self.sessions_refused += 1
                    self._summarise(reason="reserved_for_operators")
                    raise ServiceError(ua.StatusCodes.BadTooManySessions)
            return activate(*args, **kwargs)

        session.activate_session = activate_session

    def _read_only_full(self, session: Any, params: Any) -> bool:
        """Whether a read-only login would take a slot reserved for operators."""
        reserve = self.limits.reserved_for_operators
        if reserve <= 0 or self._privileged is None or self._privileged(params):
            return False
        read_only = sum(1 for other in list(self._sessions)
                        if other is not session and other.is_activated() and not _privileged_session(other))
        return read_only >= self.limits.max_sessions - reserve


def _privileged_session(session: Any) -> bool:
    return getattr(getattr(session, "user", None), "access", Role.NONE) >= Role.OPERATOR
