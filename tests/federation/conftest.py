"""Federation test helpers: fast timing, bounded waiting, in-process nodes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

from bessgw.config import FederationSection
from bessgw.federation.service import FederationService

#: generous for a shared 2-core machine, still a few seconds to detect a death
FAST = {
    "probe_interval_s": 0.3,
    "probe_timeout_s": 0.15,
    "gossip_interval_s": 0.05,
    "push_pull_interval_s": 1.0,
    "reconnect_interval_s": 0.5,
    "suspicion_mult": 3.0,
    "suspicion_max_mult": 3.0,
    "publish_interval_s": 0.1,
    "refresh_interval_s": 0.5,
    "stale_after_s": 2.0,
}


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def fast_settings(key: str, seeds: list[str] = (), **overrides: Any) -> FederationSection:
    table = {"keys": [key], **FAST, **overrides}
    return FederationSection(bind_host="127.0.0.1", bind_port=0, seeds=list(seeds), **table)


class Campus:
    """In-process services sharing one event loop; all cancelled at the end of the test."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.services: dict[str, FederationService] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.seed: str | None = None

    async def add(self, name: str, key: str | None = None, **overrides: Any) -> FederationService:
        settings = fast_settings(key or self.key, [self.seed] if self.seed else [], **overrides)
        service = FederationService(settings, name)
        await service.start()
        addr = service.node.addr
        if self.seed is None:
            self.seed = f"{addr[0]}:{addr[1]}"
        self.services[name] = service
        self.tasks[name] = asyncio.create_task(service.run(), name=f"service-{name}")
        return service

    def addr(self, name: str) -> tuple[str, int]:
        return self.services[name].node.addr

    def statuses(self, observer: str) -> dict[str, str]:
        return {m.gateway_id: m.status for m in self.services[observer].members()}

    async def stop(self, name: str, crash: bool = False) -> None:
        """Cancel a service: a planned stop (it leaves) or, with ``crash``, as if killed (no goodbye)."""
        self.services[name].leave_on_stop = not crash
        task = self.tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for name in self.tasks:
            self.services[name].leave_on_stop = False
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)


    async def __aenter__(self) -> Campus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
