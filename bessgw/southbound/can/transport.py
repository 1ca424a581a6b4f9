"""The CAN transport: every CAN bus of a gateway, shared by the units (BMS nodes) on it.

Units naming the same ``interface`` and ``channel`` share one :class:`~bessgw.southbound.can.bus.CanBus`
(one python-can bus object, one reader thread, one heartbeat timer). The interface is only a name handed
to python-can, so ``virtual`` (tests, demo), ``socketcan``, ``pcan``, ``kvaser`` ... need no code change.
Each bus is supervised in its own task: a bus that fails is reopened with backoff without touching the
others.
"""

from __future__ import annotations

import asyncio
import contextlib

from bessgw.config import CanLink as CanLinkTable
from bessgw.config import Config, UnitSection
from bessgw.plugin.roles import Logger
from bessgw.southbound.can.bus import BusFactory, CanBus, CanBusStats
from bessgw.southbound.can.link import NodeLink, TokenBucket
from bessgw.southbound.transport import Transport


class CanTransport(Transport):
    """Owns every CAN bus of the gateway; hands each unit a :class:`NodeLink`."""

    name = "can"

    def __init__(self, config: Config, log: Logger, *, bus_factory: BusFactory | None = None) -> None:
        super().__init__(config, log)
        self.settings = config.southbound.can
        self._bus_factory = bus_factory
        self._buses: dict[tuple[str, str], CanBus] = {}
        self._buckets: dict[tuple[str, str, int], TokenBucket] = {}
        self._links: dict[str, NodeLink] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._running = False

    # ------------------------------------------------------------------------------ links

    def link_for(self, unit: UnitSection) -> NodeLink:
        table = unit.can
        if table is None:
            raise ValueError(f"unit {unit.id} has no [units.can] table")
        bus = self._bus(table, unit.id)
        key = (table.interface, table.channel, table.node_id)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.settings.command_rate_hz, self.settings.command_burst)
        link = NodeLink(bus, table.node_id, table.frame_timeout_s, bucket, self.settings.send_timeout_s)
        self._links[unit.id] = link
        return link

    def _bus(self, table: CanLinkTable, unit_id: str) -> CanBus:
        key = (table.interface, table.channel)
        bus = self._buses.get(key)
        if bus is None:
            bus = CanBus(table.interface, table.channel, table.bitrate, self.settings,
                         self.log, self._bus_factory)
            self._buses[key] = bus
            if self._running:
                self._start(key, bus)
        elif table.bitrate is not None and bus.bitrate is not None and table.bitrate != bus.bitrate:
            raise ValueError(
                f"unit {unit_id}: bus {bus.name} already runs at {bus.bitrate} bit/s, not {table.bitrate}"
            )
        return bus

    def release(self, unit: UnitSection) -> None:
        link = self._links.pop(unit.id, None)
        if link is None:
            return
        link.close()
        if any(other.bus is link.bus for other in self._links.values()):
            return
        key = (link.bus.interface, link.bus.channel)
        self._buses.pop(key, None)
        task = self._tasks.pop(key, None)
        if task is None:
            link.bus.close()
        else:
            task.cancel()
            task.add_done_callback(lambda _: link.bus.close())

    # ------------------------------------------------------------------------------ views

    def bus_stats(self) -> dict[str, CanBusStats]:
        """Counters per bus (``interface:channel``), for metrics and tests."""
        return {bus.name: bus.stats for bus in self._buses.values()}

    def bus(self, interface: str, channel: str) -> CanBus:
        """The bus object for ``interface``/``channel`` (tests and diagnostics)."""
        return self._buses[(interface, channel)]

    # ------------------------------------------------------------------------------ lifecycle

    def _start(self, key: tuple[str, str], bus: CanBus) -> None:
        self._tasks[key] = asyncio.create_task(self._supervise(bus), name=f"can-bus:{bus.name}")

    async def _supervise(self, bus: CanBus) -> None:
        """Run one bus; a bug in it is logged and the bus restarted, the other buses never notice."""
        while True:
            try:
                await bus.run()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self.log.error("can_bus_crashed", bus=bus.name, error=f"{type(err).__name__}: {err}",
                               exc_info=True)
                await asyncio.sleep(self.settings.reopen_max_s)

    async def run(self) -> None:
        """Supervise every bus until cancelled; a bus task never takes another down."""
        self._running = True
        try:
            for key, bus in self._buses.items():
                if key not in self._tasks:
                    self._start(key, bus)
            self.started.set()
            await asyncio.Event().wait()
        finally:
            self._running = False
            await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        await self._stop_tasks()
        for bus in self._buses.values():
            bus.close()
