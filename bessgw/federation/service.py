"""The federation service the daemon runs as one root task: gossip node + unit publishing + campus view.

The daemon either hands it the unit supervisors' snapshots whenever it likes (``update_local_units``) or
gives it a ``source`` to poll (``UnitDirectory.snapshots``); the service gossips a unit's summary at once
when something material changed (at most every ``publish_interval_s``), and re-sends an unchanged one
every ``refresh_interval_s`` so its age stays meaningful on the other gateways. Units that disappear
from the set are tombstoned.

When ``run`` is cancelled (SIGTERM, a reload that turns federation off) the gateway leaves the campus
gracefully: its peers mark it ``left`` at once instead of suspecting it for seconds. A crash (kill -9)
is detected by SWIM instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import structlog

from bessgw import __version__
from bessgw.compat import TaskGroup
from bessgw.config import FederationSection
from bessgw.federation.node import GossipNode
from bessgw.federation.transport import Faults
from bessgw.federation.view import (
    CAPABILITY_PREFIX,
    IDENTITY_KEY,
    UNIT_PREFIX,
    CampusUnit,
    CampusView,
    MemberInfo,
    UnitSummary,
    aggregate,
    effective_quality,
)
from bessgw.federation.wire import OURS, WIRE_CURRENT, Status, VersionRange


class FederationService:
    """One gateway's membership in its campus."""

    def __init__(
        self,
        settings: FederationSection,
        gateway_id: str,
        *,
        endpoints: Mapping[str, str] | None = None,
        keys: list[bytes] | None = None,
        faults: Faults | None = None,
        source: Callable[[], Iterable[Any]] | None = None,
        leave_on_stop: bool = True,
        log: Any = None,
        state_dir: Path | None = None,
        wire: VersionRange = OURS,
    ) -> None:
        self.settings = settings
        self.gateway_id = gateway_id
        self.endpoints = dict(endpoints or {})
        self.source = source  #: polled every publish interval for the current snapshots, when given
        self.log = log if log is not None else structlog.get_logger("bessgw.federation").bind(gateway=gateway_id)
        # the boot counter in state_dir keeps this gateway's epochs growing across restarts (boot.py)
        self.node = GossipNode(gateway_id, settings, keys=keys, faults=faults, log=self.log, state_dir=state_dir,
                               wire=wire)
        self.node.leave_on_stop = leave_on_stop
        self.invalid_values = 0  #: peers' entries that authenticated but did not parse as unit summaries
        self._latest: dict[str, UnitSummary] = {}
        self.started = asyncio.Event()  #: set once the gossip socket is bound and gossip runs
        self._published: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._capabilities: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        """Bind the socket and publish our identity (``run`` does this too)."""
        if self.node.addr is not None:
            return
        addr = await self.node.start()
        self.node.set(IDENTITY_KEY, {"v": WIRE_CURRENT, "version": __version__, "addr": f"{addr[0]}:{addr[1]}",
                                     "started": time.time(), **{f"ep.{k}": v for k, v in self.endpoints.items()}})

    async def run(self) -> None:
        """Gossip and publish until cancelled."""
        await self.start()
        self.started.set()
        async with TaskGroup() as tg:
            tg.create_task(self.node.run(), name="federation-node")
            tg.create_task(self._publish_loop(), name="federation-publish")

    @property
    def leave_on_stop(self) -> bool:
        """Whether cancelling ``run`` leaves the campus gracefully (True) or just goes silent."""
        return self.node.leave_on_stop

    @leave_on_stop.setter
    def leave_on_stop(self, value: bool) -> None:
        self.node.leave_on_stop = value

    async def leave(self) -> None:
        """Leave the campus gracefully (call before cancelling ``run`` on a planned stop)."""
        await self.node.leave()

    # ------------------------------------------------------------------------------ publishing

    def update_local_units(self, snapshots: Iterable[Any], *, complete: bool = True) -> None:
        """Take the current state of our units: ``UnitSnapshot`` objects or :class:`UnitSummary`.

        With ``complete`` (the default) the iterable is every unit we run: units missing from it are
        removed from the campus (tombstoned).
        """
        seen = set()
        for item in snapshots:
            summary = item if isinstance(item, UnitSummary) else UnitSummary.from_snapshot(item)
            seen.add(summary.unit_id)
            self._latest[summary.unit_id] = summary
            capability = getattr(item, "capability", None)
            if capability is not None:
                self._publish_capability(summary.unit_id, capability)
        if complete:
            for unit_id in list(self._latest):
                if unit_id not in seen:
                    self._remove(unit_id)
        self._publish_due()

    def _publish_capability(self, unit_id: str, cap: Any) -> None:
        value = {"v": WIRE_CURRENT, "chem": cap.chemistry, "chg": cap.max_charge_kw, "dis": cap.max_discharge_kw,
                 "kwh": cap.energy_kwh, "vendor": cap.vendor, "model": cap.model, "fw": cap.firmware_version}
        if self._capabilities.get(unit_id) != value:
            self._capabilities[unit_id] = value
            self.node.set(CAPABILITY_PREFIX + unit_id, value)

    def _remove(self, unit_id: str) -> None:
        self._latest.pop(unit_id, None)
        self._published.pop(unit_id, None)
        self._capabilities.pop(unit_id, None)
        self.node.set(UNIT_PREFIX + unit_id, None)
        self.node.set(CAPABILITY_PREFIX + unit_id, None)

    def _publish_due(self) -> None:
        if self.node.state is None:
            return
        now = time.monotonic()
        s = self.settings
        for unit_id, summary in self._latest.items():
            material = summary.material()
            last = self._published.get(unit_id)
            if last is None or (last[0] != material and now - last[1] >= s.publish_interval_s) or (
                now - last[1] >= s.refresh_interval_s
            ):
                self._published[unit_id] = (material, now)
                self.node.set(UNIT_PREFIX + unit_id, summary.to_value())

    async def _publish_loop(self) -> None:
        interval = min(self.settings.publish_interval_s, self.settings.refresh_interval_s)
        while True:
            await asyncio.sleep(interval)
            if self.source is not None:
                self.update_local_units(self.source())
            else:
                self._publish_due()

    # ------------------------------------------------------------------------------ views

    def members(self) -> tuple[MemberInfo, ...]:
        """The membership table, this gateway first."""
        membership = self.node.membership
        if membership is None:
            return ()
        now = self.node.clock()
        rows = []
        node = self.node
        for member in sorted(membership.members.values(), key=lambda m: (m.node != self.gateway_id, m.node)):
            units = sum(1 for key, _, value in node.state.items(member.node)  # type: ignore[union-attr]
                        if key.startswith(UNIT_PREFIX) and value is not None)
            local = member.node == self.gateway_id
            known = node.versions.range_of(member.node, node.boot_of(member.node))
            speaks = str(node.wire) if local else str(known.speaks) if known is not None else ""
            status = "incompatible" if not local and node.incompatible(member.node) else member.status.name.lower()
            rows.append(MemberInfo(member.node, f"{member.host}:{member.port}", status, member.incarnation,
                                   max(0.0, now - member.since), local, units, speaks))
        # incompatible gateways that wrote to us but are no members of ours (we cannot read their joins)
        for peer in node.versions.incompatible_peers(node.boot_of):
            if peer.node not in membership.members:
                rows.append(MemberInfo(peer.node, peer.address, "incompatible", 0, max(0.0, now - peer.since),
                                       False, 0, str(peer.speaks)))
        return tuple(rows)

    def campus_view(self) -> CampusView:
        """Own units plus every known peer's last units, with ages and effective quality."""
        now = time.time()
        members = self.members()
        status = {m.gateway_id: m.status for m in members}
        units: list[CampusUnit] = []
        state = self.node.state
        for gateway_id, peer_status in status.items():
            if state is None or peer_status == Status.LEFT.name.lower():
                continue
            local = gateway_id == self.gateway_id
            for key, _, value in state.items(gateway_id):
                if not key.startswith(UNIT_PREFIX) or value is None:
                    continue
                try:
                    summary = UnitSummary.from_value(key[len(UNIT_PREFIX):], value)
                except (ValueError, KeyError, TypeError):
                    self.invalid_values += 1
                    continue
                age = max(0.0, now - summary.timestamp)
                quality, reason = effective_quality(summary.quality, age, local, peer_status,
                                                    self.settings.stale_after_s)
                units.append(CampusUnit(gateway_id, local, summary, age, quality, reason or summary.reason))
        units.sort(key=lambda u: (not u.local, u.gateway_id, u.summary.unit_id))
        return CampusView(self.gateway_id, now, members, tuple(units), aggregate(units, members))
