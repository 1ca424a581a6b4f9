"""The campus view in the address space: peers' gateways and units, and the campus-wide aggregate.

With federation, every gateway knows the campus (``FederationService.campus_view()``). This module mirrors
that view into ``Objects/Campus``: the aggregate as variables on the Campus folder itself, and every
PEER gateway as ``Campus/Gateways/<peer>`` (a ``PeerGatewayType``) with ``Units/<unit>`` (``PeerUnitType``)
for each unit it announces. Our own gateway and units stay where the server put them (from the unit
directory, with their full detail and commands); the view's local entries are skipped here.

Peer units are read-only by construction: ``PeerUnitType`` has no SetPower method and no writable
variable, since a unit is commanded through the gateway that owns it.

Quality is the view's *effective* quality (a peer's unit is never Good when the peer is suspected or
dead, or its data is older than ``stale_after_s``): Good → Good, Stale → Uncertain, Bad → Bad
(BadNoCommunication when the peer is unreachable), always with the source timestamp the owning gateway
stamped. Values go through the publisher's deadband writer, so an unchanged view costs no writes except
the growing ``DataAgeS`` (rounded to 0.1 s).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from asyncua import Server, ua

from bessgw.federation.view import CampusUnit, CampusView, MemberInfo
from bessgw.model import UnitState
from bessgw.northbound import information_model as model
from bessgw.northbound.publisher import Published, Publisher, quality_status
from bessgw.plugin.roles import Logger

#: returns the current campus view, or None while federation does not run
CampusProvider = Callable[[], "CampusView | None"]

_UTC = dt.timezone.utc
_GOOD = ua.StatusCode(ua.StatusCodes.Good)
#: yield to the event loop after this many peer units, so poll loops are not held up by a large campus
_UNITS_PER_SLICE = 20


class _Peer:
    """One peer gateway's nodes and its units' nodes, with what they show now."""

    def __init__(self, instance: model.Instance) -> None:
        self.published = Published(instance)
        self.units: dict[str, Published] = {}


class CampusMirror:
    """Keeps ``Objects/Campus`` in step with the campus view, at the server's sampling interval."""

    def __init__(self, server: Server, types: model.Types, publisher: Publisher, provider: CampusProvider,
                 interval_s: float, log: Logger) -> None:
        self.server = server
        self.types = types
        self.publisher = publisher
        self.provider = provider
        self.interval_s = interval_s
        self.log = log
        self.aggregate: Published | None = None
        self.peers: dict[str, _Peer] = {}
        self.refreshes = 0
        self.failures = 0  #: refreshes that raised (logged; the next interval tries again)

    async def run(self) -> None:
        """Refresh every interval until cancelled (missed slots are skipped, not bunched up)."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.refresh()
            except Exception as err:  # a faulty view must not take down the server of our own units
                self.failures += 1
                self.log.warning("opcua_campus_refresh_failed", error=f"{type(err).__name__}: {err}",
                                 failures=self.failures)
            next_at += self.interval_s
            now = loop.time()
            if next_at < now:
                next_at = now + self.interval_s - ((now - next_at) % self.interval_s)
            await asyncio.sleep(next_at - now)

    async def refresh(self) -> None:
        """One pass: ask the provider, then add, update and remove nodes to match its view."""
        view = self.provider()
        now = dt.datetime.now(_UTC)
        if view is None:
            await self._without_view()
        else:
            if self.aggregate is None:
                self.aggregate = Published(await model.create_campus_aggregate(self.server, self.types))
            await self._write_aggregate(self.aggregate, view, now)
            await self._write_peers(view, now)
        self.refreshes += 1

    async def _without_view(self) -> None:
        """Federation stopped: nothing is known of the campus any more (peers go, aggregate waits)."""
        for gateway_id in list(self.peers):
            await self._remove_peer(gateway_id)
        if self.aggregate is not None and self.aggregate.values:
            await model.mark_waiting(self.server, self.aggregate.instance)
            self.aggregate.values.clear()

    # ------------------------------------------------------------------------------ aggregate

    async def _write_aggregate(self, published: Published, view: CampusView, now: dt.datetime) -> None:
        agg = view.aggregate
        by_state = dict(agg.units_by_state)
        by_quality = dict(agg.units_by_quality)
        values: dict[str, Any] = {
            "AvailableChargeKw": agg.available_charge_kw, "AvailableDischargeKw": agg.available_discharge_kw,
            "EnergyKwh": agg.energy_kwh, "MeanSocPct": agg.mean_soc_pct, "UnitCount": agg.units_total,
            "UnitsGood": by_quality.get("good", 0), "UnitsStale": by_quality.get("stale", 0),
            "UnitsBad": by_quality.get("bad", 0),
            **{f"Units{state.value.capitalize()}": by_state.get(state.value, 0) for state in UnitState},
            "GatewaysAlive": agg.gateways_alive, "GatewaysSuspect": agg.gateways_suspect,
            "GatewaysDead": agg.gateways_dead,
        }
        source = dt.datetime.fromtimestamp(view.generated_at, _UTC)
        for name, value in values.items():
            await self.publisher.set_value(published, name, value, _GOOD, source, now)

    # ---------------------------------------------------------------------------------- peers

    async def _write_peers(self, view: CampusView, now: dt.datetime) -> None:
        members = {m.gateway_id: m for m in view.members if not m.local}
        units: dict[str, list[CampusUnit]] = {gateway_id: [] for gateway_id in members}
        for unit in view.units:
            if not unit.local and unit.gateway_id in units:
                units[unit.gateway_id].append(unit)
        for gateway_id in [g for g in self.peers if g not in members]:
            await self._remove_peer(gateway_id)
        written = 0
        for gateway_id, member in members.items():
            peer = self.peers.get(gateway_id)
            if peer is None:
                peer = self.peers[gateway_id] = _Peer(
                    await model.create_peer_gateway(self.server, self.types, gateway_id))
                self.log.info("opcua_peer_added", peer=gateway_id)
            await self._write_peer(peer, member, len(units[gateway_id]), view, now)
            shown = {u.summary.unit_id for u in units[gateway_id]}
            for unit_id in [u for u in peer.units if u not in shown]:
                await self._remove_peer_unit(peer, unit_id)
            for unit in units[gateway_id]:
                published = peer.units.get(unit.summary.unit_id)
                if published is None:
                    published = peer.units[unit.summary.unit_id] = Published(await model.create_peer_unit(
                        self.server, self.types, peer.published.instance, gateway_id, unit.summary.unit_id))
                    await asyncio.sleep(0)  # ~10 ms of node creation per unit: let the poll loops run between
                await self._write_unit(published, unit, member, view, now)
                written += 1
                if written % _UNITS_PER_SLICE == 0:
                    await asyncio.sleep(0)

    async def _write_peer(self, peer: _Peer, member: MemberInfo, unit_count: int, view: CampusView,
                          now: dt.datetime) -> None:
        source = dt.datetime.fromtimestamp(view.generated_at - member.in_status_s, _UTC)
        for name, value in (("Status", member.status), ("Address", member.address), ("UnitCount", unit_count)):
            await self.publisher.set_value(peer.published, name, value, _GOOD, source, now)

    async def _write_unit(self, published: Published, unit: CampusUnit, member: MemberInfo, view: CampusView,
                          now: dt.datetime) -> None:
        summary = unit.summary
        status = quality_status(unit.quality, connected=member.status in ("alive", "suspect"))
        source = dt.datetime.fromtimestamp(summary.timestamp, _UTC)
        values: dict[str, Any] = {
            "SocPct": summary.soc_pct, "PowerKw": summary.p_kw, "AvailableChargeKw": summary.available_charge_kw,
            "AvailableDischargeKw": summary.available_discharge_kw, "EnergyKwh": summary.energy_kwh,
            "State": summary.state.value,
        }
        set_value = self.publisher.set_value
        for name, value in values.items():
            await set_value(published, name, value, status, source, now)
        viewed = dt.datetime.fromtimestamp(view.generated_at, _UTC)
        await set_value(published, "DataAgeS", round(unit.age_s, 1), _GOOD, viewed, now)
        await set_value(published, "QualityReason", unit.reason, _GOOD, viewed, now)

    async def _remove_peer(self, gateway_id: str) -> None:
        peer = self.peers.pop(gateway_id)
        await model.delete_instance(self.server, model.gateways_folder(self.types), peer.published.instance)
        self.log.info("opcua_peer_removed", peer=gateway_id)

    async def _remove_peer_unit(self, peer: _Peer, unit_id: str) -> None:
        published = peer.units.pop(unit_id)
        await model.delete_instance(self.server, peer.published.instance.child("Units"), published.instance)
