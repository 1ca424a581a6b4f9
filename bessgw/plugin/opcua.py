"""What an OPC UA vendor driver sees of its device (implemented by ``bessgw.southbound.opcua``).

Core owns the client: one secure session per endpoint URL shared by the units behind it, subscriptions
restored after every reconnect, a keep-alive watchdog, every request bounded in time. A driver names
nodes by *browse path relative to its unit's root object* (``"Telemetry/SocPct"``; each segment is a
browse name in the unit's namespace, ``units[i].opcua.namespace_uri``), so no asyncua type or node id
ever reaches plugin code: values are plain ``float``/``int``/``bool``/``str`` (or lists of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class DataChange:
    """One value of one node, as delivered by a subscription or a read.

    :ivar path: the browse path the driver asked for (relative to the unit's root object).
    :ivar value: the value as a plain Python object.
    :ivar source_timestamp: when the *device* produced the value (epoch seconds); falls back to the
        server timestamp, then to the receive time, when the server sends none. A driver reports this,
        not "now", so data that stops changing ages and turns stale.
    :ivar received_at: when the gateway received it (epoch seconds).
    :ivar good: whether the server's status code for the value is Good.
    """

    path: str
    value: Any
    source_timestamp: float
    received_at: float
    good: bool = True


#: called with each data change, in the event loop; must be cheap (store it) and never block
ChangeHandler = Callable[[DataChange], None]


class OpcUaLink(Protocol):
    """One unit behind an OPC UA server, as seen by that unit's driver.

    Every call is bounded by ``request_timeout_s`` and raises only :class:`bessgw.plugin.DeviceError`
    subclasses: ``DeviceUnavailableError`` (not connected / reconnecting), ``DeviceTimeoutError`` (no
    answer in time), ``DeviceProtocolError`` (a Bad status code; ``code`` is its numeric value, the message
    names it, e.g. ``BadNodeIdUnknown``).
    """

    @property
    def available(self) -> bool:
        """Whether the session is up and the subscription of this unit is in place."""
        ...

    @property
    def unavailable_reason(self) -> str:
        """Why the link is not :attr:`available` (e.g. ``BadCertificateUntrusted``, a bad browse path), or ``""``."""
        ...

    def subscribe(self, paths: Sequence[str], handler: ChangeHandler) -> None:
        """Have ``handler`` called with every change of the nodes at ``paths`` (monitored items of one
        subscription per endpoint, at ``publish_interval_s``). Registering is synchronous; the monitored
        items are created on the current session and again after every reconnect, and each (re)creation
        delivers every current value at least once (a driver keeps the latest per path). An
        exception in ``handler`` is counted and logged; delivery goes on."""
        ...

    def unsubscribe(self) -> None:
        """Forget this unit's subscriptions (the driver closes)."""
        ...

    async def read(self, paths: Sequence[str]) -> list[DataChange]:
        """Read the values at ``paths`` in one request (identity blocks, one-off values)."""
        ...

    async def write(self, path: str, value: Any, kind: str = "double") -> None:
        """Write ``value`` to the variable at ``path`` as the OPC UA type ``kind`` (``"double"``,
        ``"float"``, ``"int32"``, ``"uint32"``, ``"boolean"``, ``"string"``)."""
        ...

    async def call(self, method: str, *args: Any) -> list[Any]:
        """Call the method at path ``method`` (e.g. ``"Control/SetPower"``) on its parent object with
        ``args`` (floats are sent as Double, ints as Int32, bools as Boolean, str as String); returns the
        output arguments as plain values."""
        ...
