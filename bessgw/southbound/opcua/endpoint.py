"""One OPC UA server as the gateway's client sees it: a session, one subscription, a watchdog.

The endpoint owns its asyncua ``Client`` (asyncua's own auto-reconnect stays off): a supervisor task
connects (secure channel, session, bounded by ``connect_timeout_s``), creates one subscription holding
the monitored items of every unit behind the server, then watches the session by reading the server's
``CurrentTime`` every ``keepalive_interval_s``. Any failure — watchdog read, connection lost, a request
finding the socket gone — drops the client and reconnects after a jittered backoff, and the new session
gets every unit's monitored items again. No asyncua type leaves this package.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asyncua import Client, Node, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from bessgw.backoff import Backoff
from bessgw.compat import timeout
from bessgw.config import Config, OpcUaDeviceLink
from bessgw.errors import DeviceError, DeviceProtocolError, DeviceTimeoutError, DeviceUnavailableError
from bessgw.plugin.opcua import ChangeHandler, DataChange
from bessgw.plugin.roles import Logger
from bessgw.southbound.opcua.certificate import client_identity

_CURRENT_TIME = ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime)


@dataclass(frozen=True)
class EndpointKey:
    """What makes two units share one session: same server, same security, same login."""

    url: str
    policy: str
    mode: str
    username: str | None


def endpoint_key(link: OpcUaDeviceLink) -> EndpointKey:
    return EndpointKey(link.endpoint, link.security_policy, link.security_mode, link.username)


@dataclass
class Subscriber:
    """One unit's wish: these paths under its root, delivered to this handler."""

    namespace_uri: str
    root: tuple[str, ...]
    paths: tuple[str, ...]
    handler: ChangeHandler


def _epoch(stamp: Any) -> float | None:
    if not isinstance(stamp, dt.datetime):
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def plain(value: Any) -> Any:
    """An asyncua value as a plain Python object (no asyncua type crosses into plugin code)."""
    if isinstance(value, (bool, int, float, str, bytes)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dt.datetime):
        return _epoch(value)
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if hasattr(value, "value") and isinstance(value.value, int):  # IntEnum-like
        return int(value.value)
    return str(value)


def to_change(path: str, data_value: Any, received_at: float) -> DataChange:
    stamp = _epoch(data_value.SourceTimestamp) or _epoch(data_value.ServerTimestamp) or received_at
    status = data_value.StatusCode
    good = status is None or status.is_good()
    return DataChange(path, plain(data_value.Value.Value if data_value.Value is not None else None),
                      stamp, received_at, good)


def wrap_error(err: BaseException, what: str) -> DeviceError:
    """A library error as the :class:`DeviceError` subclass a driver can act on."""
    if isinstance(err, ua.UaStatusCodeError):
        name = ua.StatusCode(err.code).name
        return DeviceProtocolError(f"{what}: {name}", code=err.code)
    if isinstance(err, (TimeoutError, asyncio.TimeoutError)):
        return DeviceTimeoutError(f"{what}: no answer in time")
    return DeviceUnavailableError(f"{what}: {type(err).__name__}: {err}")


async def bounded(awaitable: Any, timeout_s: float) -> Any:
    """Await ``awaitable`` for at most ``timeout_s``, even if the library swallows cancellation.

    asyncua catches ``CancelledError`` in places, so ``async with timeout()`` around its calls can hang
    past its deadline. Here the call runs as its own task: on time-out it is cancelled and left to end on
    its own (its outcome is retrieved so nothing is logged as lost), and the caller gets ``TimeoutError``.
    """
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_retrieve)
        raise TimeoutError
    return task.result()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _Dispatch:
    """asyncua's subscription handler: routes each notification to the units that asked for the node."""

    def __init__(self, endpoint: OpcUaEndpoint, generation: int) -> None:
        self.endpoint = endpoint
        self.generation = generation  # late news from a previous session must not touch the current one

    def datachange_notification(self, node: Node, val: Any, data: Any) -> None:
        if self.generation == self.endpoint.generation:
            self.endpoint.deliver(node.nodeid, data.monitored_item.Value)

    def status_change_notification(self, status: Any) -> None:
        if self.generation == self.endpoint.generation:
            self.endpoint.lost(f"subscription status {getattr(status.Status, 'name', status.Status)}")


class OpcUaEndpoint:
    """A shared, supervised session to one OPC UA server."""

    def __init__(self, key: EndpointKey, link: OpcUaDeviceLink, config: Config, log: Logger) -> None:
        self.key = key
        self.device = link
        self.config = config
        self.settings = config.southbound.opcua
        self.log = log
        self.publish_interval_s = link.publish_interval_s or self.settings.publish_interval_s
        self.backoff = Backoff(self.settings.reconnect_min_s, self.settings.reconnect_max_s)
        self.users = 0
        self.subscribers: dict[int, Subscriber] = {}
        self.subscribe_errors: dict[int, str] = {}  # owner -> why its monitored items could not be created
        self.client: Client | None = None
        self.generation = 0  # sessions so far; tags subscription callbacks with the session they belong to
        self.connected = asyncio.Event()
        self.last_error = "not connected yet"
        # counters for tests and metrics
        self.connects = 0
        self.connect_failures = 0
        self.notifications = 0
        self.handler_errors = 0
        self.reads = 0
        self.keepalives = 0
        self._task: asyncio.Task[None] | None = None
        self._broken = asyncio.Event()
        self._dirty = asyncio.Event()  # subscribers changed while connected
        self._routes: dict[Any, list[tuple[int, str]]] = {}
        self._subscribed: set[int] = set()
        self._namespaces: dict[str, int] = {}
        self._nodes: dict[tuple[str, tuple[str, ...]], Node] = {}
        self._subscription: Any = None
        self._down_logged = False

    # ---------------------------------------------------------------------------- lifecycle

    def ensure_started(self) -> None:
        """Start the supervisor task in the running loop (first use, or :meth:`run` of the transport)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"opcua:{self.key.url}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5.0)  # its own failure, if any, was logged by it
        await self._drop_client()

    async def _supervise(self) -> None:
        while True:
            try:
                await bounded(self._connect(), self.settings.connect_timeout_s)
            except asyncio.CancelledError:
                await self._drop_client()
                raise
            except Exception as err:
                self.connect_failures += 1
                self.last_error = str(wrap_error(err, f"connect {self.key.url}"))
                if not self._down_logged:
                    self.log.warning("opcua endpoint down", endpoint=self.key.url, reason=self.last_error)
                    self._down_logged = True
                await self._drop_client()
                await asyncio.sleep(self.backoff.next_delay())
                continue
            self.connects += 1
            self.backoff.reset()
            self.last_error = ""
            self.log.info("opcua endpoint up", endpoint=self.key.url, connects=self.connects)
            self._down_logged = False
            self.connected.set()
            try:
                await self._watch()
            finally:
                self.connected.clear()
                await self._drop_client()
            self.log.warning("opcua endpoint down", endpoint=self.key.url, reason=self.last_error)
            self._down_logged = True
            await asyncio.sleep(self.backoff.next_delay())

    async def _connect(self) -> None:
        self.generation += 1
        client = Client(self.key.url, timeout=self.settings.request_timeout_s, auto_reconnect=False,
                        watchdog_intervall=self.settings.keepalive_interval_s)
        self.client = client
        self._broken.clear()
        if self.device.security_policy == "Basic256Sha256":
            identity = await client_identity(self.config)
            client.application_uri = identity.application_uri
            mode = getattr(ua.MessageSecurityMode, self.device.security_mode)
            await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(identity.certificate),
                                      private_key=str(identity.private_key),
                                      server_certificate=_optional(self.device.server_certificate_path), mode=mode)
        if self.device.username is not None:
            client.set_user(self.device.username)
            password = self.device.password
            if self.device.password_file is not None:
                password = _read_password(self.device.password_file)
            if password is not None:
                client.set_password(password)
        await client.connect()
        self._namespaces.clear()
        self._nodes.clear()
        self._routes.clear()
        self._subscribed.clear()
        self._subscription = await client.create_subscription(self.publish_interval_s * 1000,
                                                              _Dispatch(self, self.generation))
        await self._sync_subscriptions()

    async def _watch(self) -> None:
        """Keep-alive watchdog; returns when the session is no longer trustworthy."""
        current_time = self.client.get_node(_CURRENT_TIME) if self.client else None
        while current_time is not None:
            try:
                async with timeout(self.settings.keepalive_interval_s):
                    await self._wait_for_event()
            except (TimeoutError, asyncio.TimeoutError):
                pass
            if self._broken.is_set():
                return
            try:
                if self._dirty.is_set():
                    self._dirty.clear()
                    await bounded(self._sync_subscriptions(), self.settings.request_timeout_s)
                await bounded(current_time.read_value(), self.settings.request_timeout_s)
                self.keepalives += 1
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.last_error = str(wrap_error(err, "keep-alive"))
                return

    async def _wait_for_event(self) -> None:
        broken = asyncio.ensure_future(self._broken.wait())
        dirty = asyncio.ensure_future(self._dirty.wait())
        try:
            await asyncio.wait((broken, dirty), return_when=asyncio.FIRST_COMPLETED)
        finally:
            broken.cancel()
            dirty.cancel()

    async def _drop_client(self) -> None:
        client, self.client = self.client, None
        self._subscription = None
        if client is None:
            return
        try:
            await bounded(client.disconnect(), 1.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            try:
                client.disconnect_socket()
            except Exception:
                pass

    def lost(self, reason: str) -> None:
        """The session cannot be trusted any more (connection gone, subscription dead): reconnect."""
        self.last_error = reason
        self._broken.set()

    # ------------------------------------------------------------------------ subscriptions

    def add_subscriber(self, owner: int, subscriber: Subscriber) -> None:
        known = self.subscribers.get(owner)
        self.subscribers[owner] = subscriber
        if known is not None and (known.namespace_uri, known.root, known.paths) == (
                subscriber.namespace_uri, subscriber.root, subscriber.paths):
            return  # the same items again (a driver re-identifying): keep them, new handler only
        if known is not None:
            for routes in self._routes.values():
                routes[:] = [route for route in routes if route[0] != owner]
        self._subscribed.discard(owner)
        self._dirty.set()

    def serves(self, owner: int) -> bool:
        """Connected, and ``owner``'s monitored items (if it has any) are on the current session."""
        return self.connected.is_set() and (owner not in self.subscribers or owner in self._subscribed)

    def remove_subscriber(self, owner: int) -> None:
        self.subscribers.pop(owner, None)
        self._subscribed.discard(owner)

    async def _sync_subscriptions(self) -> None:
        """Create the monitored items of every subscriber not yet on this session."""
        for owner, subscriber in list(self.subscribers.items()):
            if owner in self._subscribed or self._subscription is None:
                continue
            try:
                nodes = [await self.resolve(subscriber.namespace_uri, subscriber.root, path)
                         for path in subscriber.paths]
            except ua.UaStatusCodeError as err:  # one unit's bad path must not take its neighbours down
                self.subscribe_errors[owner] = str(wrap_error(err, f"subscribe {'/'.join(subscriber.root)}"))
                self.log.error("opcua subscribe failed", endpoint=self.key.url, reason=self.subscribe_errors[owner])
                continue
            self.subscribe_errors.pop(owner, None)
            new_nodes, shared = [], []
            for node, path in zip(nodes, subscriber.paths, strict=True):
                routes = self._routes.get(node.nodeid)
                if routes is None:  # one monitored item per node, whoever else watches it too
                    routes = self._routes[node.nodeid] = []
                    new_nodes.append(node)
                else:
                    shared.append((node, path))
                routes.append((owner, path))
            self._subscribed.add(owner)
            if new_nodes:
                await self._subscription.subscribe_data_change(new_nodes)
            if shared and self.client is not None:  # their items exist: give this owner the current values once
                values = await self.client.uaclient.read_attributes([n.nodeid for n, _ in shared],
                                                                    ua.AttributeIds.Value)
                received = time.time()
                for (_node, path), value in zip(shared, values, strict=True):
                    self._hand(owner, subscriber, to_change(path, value, received))

    def deliver(self, node_id: Any, data_value: Any) -> None:
        self.notifications += 1
        received = time.time()
        for owner, path in self._routes.get(node_id, ()):
            subscriber = self.subscribers.get(owner)
            if subscriber is not None:
                self._hand(owner, subscriber, to_change(path, data_value, received))

    def _hand(self, owner: int, subscriber: Subscriber, change: DataChange) -> None:
        try:
            subscriber.handler(change)
        except Exception as err:
            self.handler_errors += 1
            self.log.error("opcua change handler failed", path=change.path, error=repr(err))

    # ------------------------------------------------------------------------------ requests

    async def session(self) -> Client:
        """The live client, waiting up to ``connect_timeout_s`` for a (re)connection in progress."""
        self.ensure_started()
        if not self.connected.is_set():
            try:
                async with timeout(self.settings.connect_timeout_s):
                    await self.connected.wait()
            except (TimeoutError, asyncio.TimeoutError):
                raise DeviceUnavailableError(f"{self.key.url} not connected: {self.last_error}") from None
        assert self.client is not None
        return self.client

    async def resolve(self, namespace_uri: str, root: tuple[str, ...], path: str) -> Node:
        """The node at ``root/path`` (browse names in ``namespace_uri``), cached per session."""
        parts = root + tuple(part for part in path.split("/") if part)
        node = self._nodes.get((namespace_uri, parts))
        if node is not None:
            return node
        client = self.client
        if client is None:
            raise DeviceUnavailableError(f"{self.key.url} not connected: {self.last_error}")
        index = self._namespaces.get(namespace_uri)
        if index is None:
            index = self._namespaces[namespace_uri] = await client.get_namespace_index(namespace_uri)
        node = await client.nodes.objects.get_child([f"{index}:{part}" for part in parts])
        self._nodes[(namespace_uri, parts)] = node
        return node

    async def request(self, what: str, action: Callable[[], Any]) -> Any:
        """Run one request on the session, bounded in time, library errors wrapped."""
        await self.session()
        try:
            return await bounded(action(), self.settings.request_timeout_s)
        except asyncio.CancelledError:
            raise
        except DeviceError:
            raise
        except (TimeoutError, asyncio.TimeoutError) as err:  # slow, not gone: the watchdog decides that
            raise wrap_error(err, what) from err
        except (ConnectionError, OSError, ua.UaError) as err:
            if not isinstance(err, ua.UaStatusCodeError):
                self.lost(f"{what}: {err!r}")
            raise wrap_error(err, what) from err

    async def read(self, namespace_uri: str, root: tuple[str, ...], paths: Sequence[str]) -> list[DataChange]:
        async def action() -> list[DataChange]:
            nodes = [await self.resolve(namespace_uri, root, path) for path in paths]
            assert self.client is not None
            values = await self.client.uaclient.read_attributes([n.nodeid for n in nodes], ua.AttributeIds.Value)
            received = time.time()
            out = []
            for path, value in zip(paths, values, strict=True):
                if not value.StatusCode.is_good():
                    raise DeviceProtocolError(f"read {path}: {value.StatusCode.name}", code=value.StatusCode.value)
                out.append(to_change(path, value, received))
            self.reads += 1  # successful read requests (subscribed values never count here)
            return out

        return await self.request(f"read {', '.join(paths)}", action)

    async def write(self, namespace_uri: str, root: tuple[str, ...], path: str, value: Any, kind: str) -> None:
        variant_type = _KINDS.get(kind)
        if variant_type is None:
            raise ValueError(f"unknown OPC UA type {kind!r} (known: {', '.join(_KINDS)})")

        async def action() -> None:
            node = await self.resolve(namespace_uri, root, path)
            await node.write_value(ua.DataValue(ua.Variant(value, variant_type)))

        await self.request(f"write {path}", action)

    async def call(self, namespace_uri: str, root: tuple[str, ...], method: str, args: Sequence[Any]) -> list[Any]:
        parent_path, _, _name = method.rpartition("/")

        async def action() -> list[Any]:
            parent = await self.resolve(namespace_uri, root, parent_path)
            node = await self.resolve(namespace_uri, root, method)
            result = await parent.call_method(node, *[_variant(arg) for arg in args])
            if result is None:
                return []
            return [plain(item) for item in result] if isinstance(result, list) else [plain(result)]

        return await self.request(f"call {method}", action)


_KINDS = {
    "double": ua.VariantType.Double,
    "float": ua.VariantType.Float,
    "int32": ua.VariantType.Int32,
    "uint32": ua.VariantType.UInt32,
    "boolean": ua.VariantType.Boolean,
    "string": ua.VariantType.String,
}


def _variant(value: Any) -> ua.Variant:
    if isinstance(value, bool):
        return ua.Variant(value, ua.VariantType.Boolean)
    if isinstance(value, int):
        return ua.Variant(value, ua.VariantType.Int32)
    if isinstance(value, float):
        return ua.Variant(value, ua.VariantType.Double)
    return ua.Variant(str(value), ua.VariantType.String)


def _optional(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _read_password(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").splitlines()[0].strip()
    except (OSError, IndexError) as err:
        raise DeviceError(f"cannot read the OPC UA password from {path}: {err}") from err
