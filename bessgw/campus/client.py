"""Our etcd client: multi-endpoint failover, a bound on every call, and nothing of gRPC or aetcd outside.

aetcd (asyncio gRPC) talks to one endpoint and has no keepalive loop; it also only dials plaintext. We use
its generated etcd v3 stubs (``aetcd.rpc``) on channels of our own, one per endpoint, so that:

- every call runs inside ``asyncio.timeout(request_timeout_s)``; on a timeout or an unavailable member the
  call moves to the next endpoint (at most one pass over the list, so a call takes at most
  ``len(endpoints) x request_timeout_s``);
- every request carries etcd's ``hasleader`` metadata, so a member cut off from the majority refuses at
  once instead of letting a linearizable read wait for its deadline;
- reads are linearizable (never ``serializable``: a cut-off member answers those with stale data);
- a prefix watch survives failover: it is re-created on the next endpoint from the last revision seen,
  and also moves when any other call failed over (a watch on a cut-off member would stay silent);
- TLS (CA, optional client certificate) when configured.

Errors leave as :class:`~bessgw.errors.CoordinationError` (:class:`~bessgw.errors.LeaseLostError` when a
lease is gone); records leave as :class:`~bessgw.campus.protocol.KeyValue`. Retrying a write on the next
endpoint after a timeout may apply it twice: every write here is either idempotent (puts of our own
records) or a guarded txn whose second attempt fails its guard, which callers resolve by reading back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from aetcd import rpc

from bessgw.campus.protocol import KeyValue, Txn
from bessgw.errors import CoordinationError, LeaseLostError

T = TypeVar("T")

_METADATA = (("hasleader", "true"),)
#: gRPC codes after which the next endpoint may do better
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
}
_CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.enable_retries", 0),
)


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None


@dataclass(frozen=True)
class WatchEvent:
    """One change under a watched prefix: ``kind`` is ``put`` or ``delete``; for a deletion ``kv.value`` is
    empty and ``kv.mod_revision`` is the revision of the deletion."""

    kind: str
    kv: KeyValue


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes a range cover every key starting with ``prefix``."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _kv(kv: Any) -> KeyValue:
    return KeyValue(kv.key.decode("utf-8", "replace"), bytes(kv.value), kv.mod_revision, kv.create_revision,
                    kv.lease)


class _Endpoint:
    def __init__(self, target: str, credentials: grpc.ChannelCredentials | None) -> None:
        self.target = target
        self._credentials = credentials
        self._channel: grpc.aio.Channel | None = None
        self.kv: Any = None
        self.lease: Any = None
        self.watch: Any = None

    def stubs(self) -> _Endpoint:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self.target, options=_CHANNEL_OPTIONS)
            else:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials, options=_CHANNEL_OPTIONS)
            self.kv = rpc.KVStub(self._channel)
            self.lease = rpc.LeaseStub(self._channel)
            self.watch = rpc.WatchStub(self._channel)
        return self

    async def reset(self, grace_s: float) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                async with asyncio.timeout(grace_s):
                    await channel.close(grace=None)
            except TimeoutError:
                pass


class EtcdClient:
    """etcd v3 over gRPC with failover across ``endpoints`` (``host:port``) and a bound on every call."""

    def __init__(self, endpoints: Sequence[str], request_timeout_s: float, tls: TlsFiles | None = None) -> None:
        if not endpoints:
            raise CoordinationError("no etcd endpoint configured")
        credentials = None
        if tls is not None:
            try:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates=tls.ca_file.read_bytes(),
                    private_key=tls.key_file.read_bytes() if tls.key_file else None,
                    certificate_chain=tls.cert_file.read_bytes() if tls.cert_file else None,
                )
            except OSError as err:
                raise CoordinationError(f"cannot read the etcd TLS files: {err}") from err
        self._endpoints = [_Endpoint(target, credentials) for target in endpoints]
        self._current = 0
        self.request_timeout_s = request_timeout_s
        self.failovers = 0
        #: set whenever a call moved to another endpoint (watches follow)
        self._moved = asyncio.Event()

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to first."""
        return self._endpoints[self._current].target

    async def close(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.reset(self.request_timeout_s)

    def _fail_over(self, index: int) -> None:
        # (the failed member's channel is kept: closing it would cancel other tasks' calls on it, and gRPC
        # reconnects it by itself, with its backoff capped at 2 s by _CHANNEL_OPTIONS)
        if self._current == index:
            self._current = (index + 1) % len(self._endpoints)
            self.failovers += 1
            self._moved.set()

    async def _call(self, what: str, call: Callable[[_Endpoint], Awaitable[T]]) -> T:
        """Run ``call`` on the current endpoint, then on each next one after a retryable failure."""
        problems = []
        for _ in range(len(self._endpoints)):
            index = self._current
            endpoint = self._endpoints[index]
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    return await call(endpoint.stubs())
            except TimeoutError:
                problems.append(f"{endpoint.target}: no answer in {self.request_timeout_s:g} s")
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are being cancelled
                problems.append(f"{endpoint.target}: call cancelled by gRPC")  # the channel went away
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND and "lease" in (err.details() or ""):
                    raise LeaseLostError(f"etcd {what}: {err.details()}") from None
                if err.code() not in _RETRYABLE:
                    raise CoordinationError(f"etcd {what} refused by {endpoint.target}: {err.details()}") from None
                problems.append(f"{endpoint.target}: {err.code().name.lower()} ({err.details()})")
            self._fail_over(index)
        raise CoordinationError(f"etcd {what} failed on every endpoint: " + "; ".join(problems))

    # ------------------------------------------------------------------ key-value
    async def get(self, key: str) -> tuple[int, KeyValue | None]:
        """Linearizable read of one key: ``(revision of the read, the key or None)``."""
        request = rpc.RangeRequest(key=key.encode())
        response = await self._call("get", lambda e: e.kv.Range(request, metadata=_METADATA))
        return response.header.revision, (_kv(response.kvs[0]) if response.kvs else None)

    async def get_prefix(self, prefix: str) -> tuple[int, list[KeyValue]]:
        """Linearizable read of every key under ``prefix``."""
        raw = prefix.encode()
        request = rpc.RangeRequest(key=raw, range_end=prefix_end(raw))
        response = await self._call("range", lambda e: e.kv.Range(request, metadata=_METADATA))
        return response.header.revision, [_kv(kv) for kv in response.kvs]

    async def put(self, key: str, value: bytes, lease_id: int = 0) -> int:
        """Put one key (on ``lease_id`` if given); returns the revision."""
        request = rpc.PutRequest(key=key.encode(), value=value, lease=lease_id)
        response = await self._call("put", lambda e: e.kv.Put(request, metadata=_METADATA))
        return response.header.revision

    async def delete(self, key: str) -> tuple[int, int]:
        """Delete one key: ``(revision, number deleted)``."""
        request = rpc.DeleteRangeRequest(key=key.encode())
        response = await self._call("delete", lambda e: e.kv.DeleteRange(request, metadata=_METADATA))
        return response.header.revision, response.deleted

    async def txn(self, txn: Txn) -> tuple[bool, int]:
        """All guards hold -> all puts, atomically: ``(succeeded, revision)``."""
        compare = []
        for guard in txn.guards:
            if guard.target == "mod":
                compare.append(rpc.Compare(key=guard.key.encode(), result=rpc.Compare.EQUAL,
                                           target=rpc.Compare.MOD, mod_revision=guard.revision))
            elif guard.target == "create":
                compare.append(rpc.Compare(key=guard.key.encode(), result=rpc.Compare.EQUAL,
                                           target=rpc.Compare.CREATE, create_revision=guard.revision))
            else:
                raise ValueError(f"unknown guard target {guard.target!r}")
        success = [rpc.RequestOp(request_put=rpc.PutRequest(key=put.key.encode(), value=put.value, lease=put.lease_id))
                   for put in txn.puts]
        request = rpc.TxnRequest(compare=compare, success=success, failure=[])
        response = await self._call("txn", lambda e: e.kv.Txn(request, metadata=_METADATA))
        return response.succeeded, response.header.revision

    # ------------------------------------------------------------------ leases
    async def grant(self, ttl_s: int) -> tuple[int, int, float]:
        """A new lease: ``(lease id, granted TTL, monotonic send time of the successful request)``."""
        request = rpc.LeaseGrantRequest(TTL=ttl_s, ID=0)
        sent = [0.0]

        async def call(endpoint: _Endpoint) -> Any:
            sent[0] = time.monotonic()
            return await endpoint.lease.LeaseGrant(request, metadata=_METADATA)

        response = await self._call("lease grant", call)
        if response.error:
            raise CoordinationError(f"etcd lease grant: {response.error}")
        return response.ID, response.TTL, sent[0]

    async def keepalive(self, lease_id: int) -> tuple[int, float]:
        """One keepalive round trip: ``(TTL left, monotonic send time)``; :class:`LeaseLostError` when the
        lease is gone (etcd answers TTL 0)."""
        sent = [0.0]

        async def call(endpoint: _Endpoint) -> Any:
            sent[0] = time.monotonic()
            stream = endpoint.lease.LeaseKeepAlive(iter([rpc.LeaseKeepAliveRequest(ID=lease_id)]),
                                                   metadata=_METADATA)
            try:
                async for reply in stream:
                    return reply
            finally:
                stream.cancel()
            raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                       "keepalive stream closed without an answer")

        reply = await self._call("lease keepalive", call)
        if reply.TTL <= 0:
            raise LeaseLostError(f"etcd lease {lease_id:x} is gone")
        return reply.TTL, sent[0]

    async def revoke(self, lease_id: int) -> None:
        """Revoke a lease (its keys are deleted); a lease already gone is not an error."""
        request = rpc.LeaseRevokeRequest(ID=lease_id)
        try:
            await self._call("lease revoke", lambda e: e.lease.LeaseRevoke(request, metadata=_METADATA))
        except LeaseLostError:
            pass

    async def time_to_live(self, lease_id: int) -> float:
        """Seconds left on a lease (``-1`` when it is gone)."""
        request = rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=False)
        response = await self._call("lease ttl", lambda e: e.lease.LeaseTimeToLive(request, metadata=_METADATA))
        return float(response.TTL)

    # ------------------------------------------------------------------ watch
    async def watch_prefix(self, prefix: str, start_revision: int) -> AsyncIterator[WatchEvent]:
        """Every change under ``prefix`` from ``start_revision`` on, across endpoint failures.

        Ends with :class:`CoordinationError` only when the history needed is compacted away (the caller
        reads the whole prefix again) or no endpoint accepts a watch. Cancel the iterating task to stop.
        """
        raw = prefix.encode()
        next_revision = start_revision
        failures = 0
        while True:
            index = self._current
            endpoint = self._endpoints[index].stubs()
            self._moved.clear()
            stream = endpoint.watch.Watch(metadata=_METADATA)
            moved = asyncio.ensure_future(self._moved.wait())
            try:
                async with asyncio.timeout(self.request_timeout_s):
                    await stream.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                        key=raw, range_end=prefix_end(raw), start_revision=next_revision)))
                    created = await stream.read()
                if created is grpc.aio.EOF or not created.created or created.canceled:
                    raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                                               "watch not created")
                failures = 0
                while True:
                    read = asyncio.ensure_future(stream.read())
                    done, _ = await asyncio.wait({read, moved}, return_when=asyncio.FIRST_COMPLETED)
                    if read not in done:
                        read.cancel()
                        break  # another call failed over: follow it
                    response = read.result()
                    if response is grpc.aio.EOF or response.canceled:
                        if response is not grpc.aio.EOF and response.compact_revision:
                            raise CoordinationError(f"etcd watch: revision {next_revision} is compacted")
                        raise grpc.aio.AioRpcError(grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(),
                                                   grpc.aio.Metadata(), "watch canceled by the server")
                    if response.compact_revision:
                        raise CoordinationError(f"etcd watch: revision {next_revision} is compacted")
                    for event in response.events:
                        kv = _kv(event.kv)
                        next_revision = max(next_revision, kv.mod_revision + 1)
                        yield WatchEvent("delete" if event.type == rpc.Event.DELETE else "put", kv)
            except (TimeoutError, grpc.aio.AioRpcError) as err:
                failures += 1
                if failures > 2 * len(self._endpoints):
                    raise CoordinationError(f"etcd watch failed on every endpoint: {err}") from None
                self._fail_over(index)
                await asyncio.sleep(min(0.05 * failures, 0.5))  # back off (bounded) before the next member
            finally:
                moved.cancel()
                stream.cancel()
