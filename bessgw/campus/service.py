"""``CampusService``: one per gateway; keeps the lease, runs the election and the allocator, and hands the
gateway's share to its control loop through ``share_sink``.

Interface (what the daemon, the CLI and OPC UA use):

- ``CampusService(settings, gateway_id, campus_view, share_sink)``: ``settings`` is the
  ``[campus.coordination]`` table, ``campus_view()`` returns the federation :class:`CampusView` (or
  ``None``), ``await share_sink(share, fence_deadline_monotonic)`` receives :class:`Share` or ``None``.
- ``await run()``: the gateway-wide service; cancel it to stop (it first tells the sink ``None``, then
  revokes the lease so the share moves at once; both bounded).
- ``await submit_setpoint(p_kw, q_kvar=0.0, *, command_id=None, source="cli", principal="",
  expires_in_s=None, traceparent="") -> SubmitResult``: commit the campus setpoint; idempotent by command
  id campus-wide. :class:`CoordinationError` (exit 69) when etcd cannot commit it,
  :class:`SetpointRefusedError` (exit 65) for values that are not a setpoint. Works without ``run()``.
- ``await release(principal="") -> ReleaseResult``: delete the campus setpoint (every share goes to 0).
- ``status() -> CampusStatus``: the last known campus state (no I/O).

**The sink contract.** ``share_sink`` is an async callable, awaited from the service's task whenever the
share to act on or its fencing deadline changes, at least every :data:`REDELIVER_S` while a share holds
(so the receiver may let it lapse when deliveries stop), and with ``(None, -inf)`` when the gateway must
stop (deadline passed, share deleted or corrupt, lease lost, setpoint expired, service stopping). The
control loop must apply the share as its ``campus`` source and check ``time.monotonic() <
fence_deadline_monotonic`` immediately before every device write that keeps or raises ``|P|`` (a paused
process must not wake up and write an old share). After the sink returns, the service acknowledges the
share revision in etcd, which lets the allocator commit increases elsewhere: so the sink must return only
once it has stopped acting on any older, larger share — and raise when it cannot confirm that; the service
then does not acknowledge, and delivers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

from bessgw.campus.allocation import GatewayAvailability, availability_from_view
from bessgw.campus.client import EtcdClient, TlsFiles
from bessgw.campus.fencing import FenceClock
from bessgw.campus.protocol import (
    CampusState,
    GatewaySide,
    Guard,
    Keys,
    KeyValue,
    Put,
    Txn,
    allocator_step,
    decode_state,
    election_txn,
)
from bessgw.campus.records import AllocatorClaim, CampusSetpoint, CommandSeen, Presence, Share, valid_command_id
from bessgw.config.campus import CoordinationSection
from bessgw.errors import BessgwError, CoordinationError, LeaseLostError, SetpointRefusedError
from bessgw.federation.view import CampusView

log = structlog.get_logger("bessgw.campus")

ShareSink = Callable[[Share | None, float], Awaitable[None]]
#: a share in force is delivered again at least this often, even when nothing changed (seconds)
REDELIVER_S = 1.0
#: bound on one delivery to the sink (a lower share waits for the control loop to write it)
SINK_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SubmitResult:
    """A committed campus setpoint: ``duplicate`` when the command id had been committed before (by any
    gateway), in which case ``revision`` is that first commit's."""

    command_id: str
    revision: int
    duplicate: bool


@dataclass(frozen=True)
class ReleaseResult:
    revision: int
    released: bool


@dataclass(frozen=True)
class GatewayShareStatus:
    gateway_id: str
    share_p_kw: float | None
    share_q_kvar: float | None
    share_revision: int
    applied_revision: int
    applied_p_kw: float | None
    lease_time_left_s: float | None
    #: what the gateway's units deliver now, from the campus view (gossip, eventually consistent)
    delivered_p_kw: float | None = None


@dataclass(frozen=True)
class CampusStatus:
    setpoint: CampusSetpoint | None
    setpoint_revision: int
    allocator: str | None
    gateways: tuple[GatewayShareStatus, ...]
    shortfall_p_kw: float
    shortfall_q_kvar: float
    revision: int
    corrupt_records: int
    own_fence_left_s: float
    endpoint: str
    shares_refused: int = 0  #: versions of this gateway's share it refused: the setpoint did not explain them


class CampusService:
    """Campus dispatch for one gateway (module docstring)."""

    def __init__(self, settings: CoordinationSection, gateway_id: str,
                 campus_view: Callable[[], CampusView | None], share_sink: ShareSink, *,
                 client: EtcdClient | None = None) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.keys = Keys(settings.key_prefix)
        self._view = campus_view
        self._sink = share_sink
        tls = None
        if settings.ca_file is not None:
            tls = TlsFiles(settings.ca_file, settings.cert_file, settings.key_file)
        self.client = client or EtcdClient(settings.endpoints, settings.request_timeout_s, tls)
        self.side = GatewaySide(gateway_id, FenceClock(
            float(settings.lease_ttl_s), settings.election_timeout_s, settings.effective_fence_hold_s))
        self._state = CampusState(revision=0)
        self._lease_ttl_left: dict[str, float] = {}
        self._shortfall = (0.0, 0.0)
        self._corrupt_seen: set[tuple[str, int]] = set()
        self._changed = asyncio.Event()
        self._allocate_now = asyncio.Event()
        self._verify_now = asyncio.Event()  #: a share asking for more waits for a read that explains it
        self._delivered: tuple[Share | None, float] | None = None
        self._delivered_at = -math.inf
        self.sink_failures = 0  #: deliveries the sink refused or failed (not acknowledged, delivered again)
        self.started = asyncio.Event()  #: set once run() works (etcd may still be unreachable: never waited for)

    # ------------------------------------------------------------------ public API
    @property
    def corrupt_records(self) -> int:
        """Distinct corrupt values (key, revision) refused so far, by this gateway's reads and its share."""
        return len(self._corrupt_seen)

    async def submit_setpoint(self, p_kw: float, q_kvar: float = 0.0, *, command_id: str | None = None,
                              source: str = "cli", principal: str = "", expires_in_s: float | None = None,
                              traceparent: str = "") -> SubmitResult:
        """Commit the campus setpoint in etcd, once per command id across the campus (module docstring)."""
        command_id = command_id or uuid.uuid4().hex
        if not valid_command_id(command_id):
            raise SetpointRefusedError(f"campus setpoint refused: command id {command_id!r:.60} is not valid")
        if expires_in_s is not None and not (math.isfinite(expires_in_s) and expires_in_s > 0):
            raise SetpointRefusedError(f"campus setpoint refused: expires_in_s must be > 0 (got {expires_in_s})")
        now = time.time()
        try:
            record = CampusSetpoint(
                p_kw=float(p_kw), q_kvar=float(q_kvar), command_id=command_id, source=source,
                principal=principal, accepted_by=self.gateway_id, accepted_at=now,
                expires_at=now + expires_in_s if expires_in_s is not None else None, traceparent=traceparent,
            )
            seen = CommandSeen(command_id, record.p_kw, record.q_kvar, self.gateway_id)
        except (ValueError, TypeError) as err:
            raise SetpointRefusedError(f"campus setpoint refused: {err}") from None
        retention_lease, _, _ = await self.client.grant(int(self.settings.command_retention_s))
        command_key = self.keys.command(command_id)
        txn = Txn(
            guards=(Guard(command_key, "create", 0),),
            puts=(Put(self.keys.setpoint, record.encode()), Put(command_key, seen.encode(), retention_lease)),
        )
        committed, revision = await self.client.txn(txn)
        if committed:
            log.info("campus setpoint committed", command_id=command_id, p_kw=record.p_kw, q_kvar=record.q_kvar,
                     revision=revision, source=source)
            self._allocate_now.set()
            return SubmitResult(command_id, revision, duplicate=False)
        with contextlib.suppress(CoordinationError):
            await self.client.revoke(retention_lease)
        _, first = await self.client.get(command_key)
        if first is None:
            raise CoordinationError(f"campus setpoint {command_id}: not committed (the command key vanished)")
        log.info("campus setpoint already committed", command_id=command_id, revision=first.mod_revision)
        return SubmitResult(command_id, first.mod_revision, duplicate=True)

    async def release(self, principal: str = "") -> ReleaseResult:
        """Delete the campus setpoint: every share decreases to 0."""
        revision, deleted = await self.client.delete(self.keys.setpoint)
        log.info("campus setpoint released", revision=revision, released=bool(deleted), principal=principal)
        self._allocate_now.set()
        return ReleaseResult(revision, bool(deleted))

    def status(self) -> CampusStatus:
        state, now = self._state, time.monotonic()
        delivered = self._delivered_by_gateway()
        rows = []
        for gateway in sorted(set(state.gateways) | set(state.shares)):
            entry = state.shares.get(gateway)
            applied, _ = state.applied.get(gateway, (None, 0))
            share = entry.share if entry is not None else None
            rows.append(GatewayShareStatus(
                gateway_id=gateway,
                share_p_kw=share.p_kw if share is not None else None,
                share_q_kvar=share.q_kvar if share is not None else None,
                share_revision=entry.mod_revision if entry is not None else 0,
                applied_revision=applied.share_revision if applied is not None else 0,
                applied_p_kw=applied.applied_p_kw if applied is not None else None,
                lease_time_left_s=self._lease_ttl_left.get(gateway),
                delivered_p_kw=delivered.get(gateway),
            ))
        shortfall = self._shortfall
        if state.allocator_id != self.gateway_id and state.allocation is not None:
            # not the allocator: its last committed step says what the campus lacks (as of that step)
            shortfall = (state.allocation.shortfall_p_kw, state.allocation.shortfall_q_kvar)
        return CampusStatus(
            setpoint=state.setpoint, setpoint_revision=state.setpoint_mod_revision, allocator=state.allocator_id,
            gateways=tuple(rows), shortfall_p_kw=shortfall[0], shortfall_q_kvar=shortfall[1],
            revision=state.revision, corrupt_records=self.corrupt_records,
            own_fence_left_s=self.side.fence.time_left(now), endpoint=self.client.endpoint,
            shares_refused=self.side.refused_count,
        )

    def _delivered_by_gateway(self) -> dict[str, float]:
        """Σ of each gateway's units' power in the campus view (no I/O; empty without a view)."""
        try:
            view = self._view()
        except Exception:  # another layer's failure: the status shows nothing delivered rather than failing
            return {}
        delivered: dict[str, float] = {}
        for unit in view.units if view is not None else ():
            if math.isfinite(unit.summary.p_kw):
                delivered[unit.gateway_id] = delivered.get(unit.gateway_id, 0.0) + unit.summary.p_kw
        return delivered

    # ------------------------------------------------------------------ the service
    async def run(self) -> None:
        """Lease, keepalives, watch, fencing reads, election and allocation, until cancelled."""
        self.started.set()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._lease_loop(), name="campus-lease")
                group.create_task(self._watch_loop(), name="campus-watch")
                group.create_task(self._fence_loop(), name="campus-fence")
                group.create_task(self._allocator_loop(), name="campus-allocator")
                group.create_task(self._verify_loop(), name="campus-verify")
                group.create_task(self._sink_loop(), name="campus-sink")
        finally:
            with contextlib.suppress(TimeoutError):  # stop acting first, then let the share go
                async with asyncio.timeout(SINK_TIMEOUT_S):
                    await self._deliver(None, -math.inf)
            lease_id = self.side.lease_id
            self.side.lease_lost()
            if lease_id:
                with contextlib.suppress(CoordinationError, TimeoutError):
                    async with asyncio.timeout(self.settings.request_timeout_s):
                        await self.client.revoke(lease_id)
            await self.client.close()

    async def _lease_loop(self) -> None:
        """Grant a lease and register, then keep it alive every TTL / 3; a lost lease stops the share at once."""
        interval_s = self.settings.keepalive_interval_s
        while True:
            try:
                if self.side.lease_id == 0:
                    lease_id, _ttl, sent = await self.client.grant(self.settings.lease_ttl_s)
                    self.side.new_lease(lease_id, sent)
                    presence = Presence(self.gateway_id, time.time())
                    await self.client.put(self.keys.gateway(self.gateway_id), presence.encode(), lease_id)
                    log.info("campus lease granted", lease=f"{lease_id:x}", ttl_s=self.settings.lease_ttl_s)
                    self._changed.set()
                    self._allocate_now.set()
                else:
                    _ttl, sent = await self.client.keepalive(self.side.lease_id)
                    self.side.fence.keepalive_ok(sent)
                    self._changed.set()
            except LeaseLostError:
                log.warning("campus lease lost: stopping the share", lease=f"{self.side.lease_id:x}")
                self.side.lease_lost()
                self._changed.set()
                continue
            except CoordinationError as err:
                log.warning("campus keepalive failed", error=str(err))
            await asyncio.sleep(interval_s)

    async def _fence_loop(self) -> None:
        """Linearizable read of our share often enough that the hold never runs out while etcd is healthy."""
        interval_s = min(self.settings.effective_fence_hold_s, self.settings.keepalive_interval_s) / 3.0
        key = self.keys.share(self.gateway_id)
        while True:
            if self.side.lease_id:
                sent = time.monotonic()
                try:
                    revision, kv = await self.client.get(key)
                except CoordinationError as err:
                    log.debug("campus fencing read failed", error=str(err))
                else:
                    self.side.fence.linearizable_ok(sent)
                    self._share_from(kv, revision)
                    self._changed.set()
            await asyncio.sleep(interval_s)

    def _share_from(self, kv: KeyValue | None, read_revision: int) -> None:
        if kv is None:
            self.side.share_absent(read_revision)
            return
        before = self.side.corrupt_count
        self.side.share_seen(kv.value, kv.mod_revision, kv.lease_id)
        if self.side.corrupt_count != before:
            self._corrupt(kv.key, kv.mod_revision)
        if self.side.pending is not None:
            self._verify_now.set()

    def _corrupt(self, key: str, revision: int) -> None:
        if (key, revision) not in self._corrupt_seen:
            self._corrupt_seen.add((key, revision))
            log.warning("campus record refused: corrupt value", key=key, revision=revision)

    async def _watch_loop(self) -> None:
        """Follow the prefix: our share at once, anything else wakes the allocator."""
        own_share = self.keys.share(self.gateway_id)
        while True:
            try:
                revision, _ = await self.client.get(self.keys.setpoint)
                async for event in self.client.watch_prefix(self.keys.prefix, revision + 1):
                    kv = event.kv
                    if kv.key == own_share:
                        if event.kind == "delete":
                            self.side.share_seen(None, kv.mod_revision, 0)
                        else:
                            self._share_from(kv, kv.mod_revision)
                        self._changed.set()
                    else:
                        self._allocate_now.set()
                        if self.side.pending is not None:
                            self._verify_now.set()  # the setpoint or another share moved: check again
            except CoordinationError as err:
                log.warning("campus watch interrupted", error=str(err))
                await asyncio.sleep(self.settings.request_timeout_s)

    async def _verify_loop(self) -> None:
        """Check a share that asks for more against a linearizable read of the prefix (protocol docstring).

        Runs when such a share arrives, again whenever the prefix changes while it is refused, and at least
        every ``allocation_interval_s`` while one waits; nothing is read while none waits.
        """
        interval_s = self.settings.allocation_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s if self.side.pending is not None else None):
                    await self._verify_now.wait()
            self._verify_now.clear()
            if self.side.pending is None:
                continue
            try:
                revision, kvs = await self.client.get_prefix(self.keys.prefix)
            except CoordinationError as err:
                log.debug("campus share check failed", error=str(err))
                await asyncio.sleep(min(interval_s, self.settings.request_timeout_s))
                continue
            state = decode_state(revision, kvs, self.keys)
            refused_before = self.side.refused_count
            if self.side.verify(state, time.time()):
                self._changed.set()
            if self.side.refused_count != refused_before:
                pending = self.side.pending
                log.warning("campus share refused: the campus setpoint does not explain it",
                            revision=self.side.refused_revision, reason=self.side.last_refusal,
                            p_kw=pending[0].p_kw if pending is not None else None)
            await asyncio.sleep(0.02)  # coalesce a burst of watch events into one read

    async def _sink_loop(self) -> None:
        """Deliver the share to the control loop on every change and when the deadline passes; then ack."""
        while True:
            now = time.monotonic()
            share = self.side.commanded(now, time.time())
            deadline = self.side.fence.deadline() if share is not None else -math.inf
            delivered = await self._deliver(share, deadline)
            ack = self.side.pending_acknowledgement(now, time.time()) if delivered else None
            if ack is not None:
                sent = time.monotonic()
                try:
                    await self.client.put(self.keys.applied(self.gateway_id), ack.encode(), self.side.lease_id)
                except LeaseLostError:
                    self.side.lease_lost()
                    continue
                except CoordinationError as err:
                    log.debug("campus acknowledgement failed", error=str(err))
                else:
                    self.side.acknowledged(ack.share_revision)
                    self.side.fence.linearizable_ok(sent)
            wait_s = REDELIVER_S if share is None else min(REDELIVER_S, max(0.0, deadline - time.monotonic()) + 0.001)
            if not delivered:
                wait_s = min(wait_s, 0.2)  # the sink refused: try again soon, acknowledging nothing meanwhile
            if share is not None and share.expires_at is not None:
                wait_s = min(wait_s, max(0.0, share.expires_at - time.time()) + 0.001)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s if ack is None else 0.2):
                    await self._changed.wait()

    async def _deliver(self, share: Share | None, deadline: float) -> bool:
        """Hand the share to the sink; whether it took it (only then may the share be acknowledged)."""
        now = time.monotonic()
        if self._delivered == (share, deadline) and (share is None or now - self._delivered_at < REDELIVER_S):
            return True
        try:
            async with asyncio.timeout(SINK_TIMEOUT_S):
                await self._sink(share, deadline)
        except (BessgwError, TimeoutError) as err:
            self.sink_failures += 1
            self._delivered = None
            log.warning("campus share not applied", error=str(err) or type(err).__name__,
                        p_kw=share.p_kw if share is not None else None)
            return False
        except Exception:  # the sink is the control loop's door: its bug must not stop campus dispatch
            self.sink_failures += 1
            self._delivered = None
            log.exception("campus share sink failed")
            return False
        self._delivered, self._delivered_at = (share, deadline), now
        return True

    async def _allocator_loop(self) -> None:
        """Read the campus state; take the allocator role if free; if it is ours, commit the next step."""
        interval_s = self.settings.allocation_interval_s
        while True:
            self._allocate_now.clear()
            try:
                await self._allocate_once()
            except CoordinationError as err:
                log.debug("campus allocation round failed", error=str(err))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._allocate_now.wait()
            await asyncio.sleep(0.02)  # coalesce a burst of watch events into one read

    async def _allocate_once(self) -> None:
        revision, kvs = await self.client.get_prefix(self.keys.prefix)
        state = decode_state(revision, kvs, self.keys)
        for key in state.corrupt_keys:
            self._corrupt(key, next(kv.mod_revision for kv in kvs if kv.key == key))
        self._state = state
        lease_id = self.side.lease_id
        if not lease_id:
            return
        if state.allocator_id is None and state.allocator_mod_revision == 0:
            won, _ = await self.client.txn(election_txn(self.keys, AllocatorClaim(self.gateway_id, time.time()),
                                                        lease_id))
            if won:
                log.info("campus allocator: this gateway")
                self._allocate_now.set()
            return
        if state.allocator_id != self.gateway_id or state.allocator_lease_id != lease_id:
            return
        step = allocator_step(state, self.keys, self._availability, time.time(),
                              min_change_kw=self.settings.min_share_change_kw,
                              soc_balance_gain=self.settings.soc_balance_gain)
        self._shortfall = (step.split.shortfall_p_kw, step.split.shortfall_q_kvar)
        if step.txn is not None:
            committed, revision = await self.client.txn(step.txn)
            log.info("campus shares", phase=step.step.phase, committed=committed, revision=revision,
                     shares={g: round(p, 3) for g, (p, _) in step.step.writes.items()})
            self._allocate_now.set()
        await self._refresh_lease_times(state)

    async def refresh_lease_times(self) -> None:
        """Ask etcd for every gateway's lease time left now (the allocator does it every round; a status
        request on another gateway calls this first). One bounded call per gateway."""
        await self._refresh_lease_times(self._state)

    async def _refresh_lease_times(self, state: CampusState) -> None:
        left = {}
        for gateway, (lease_id, _) in state.gateways.items():
            with contextlib.suppress(CoordinationError):
                left[gateway] = await self.client.time_to_live(lease_id)
        self._lease_ttl_left = left

    def _availability(self, gateway_ids: Sequence[str]) -> list[GatewayAvailability]:
        view = None
        try:
            view = self._view()
        except Exception:  # the campus view is another layer's: a failure there means "nothing available"
            log.exception("campus view failed")
        if view is None:
            return [GatewayAvailability(g, 0.0, 0.0, math.nan) for g in gateway_ids]
        return availability_from_view(view, gateway_ids)
