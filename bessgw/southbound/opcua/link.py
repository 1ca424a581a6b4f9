"""The per-unit face of an :class:`OpcUaEndpoint`: what a driver gets as its :class:`OpcUaLink`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bessgw.config import OpcUaDeviceLink
from bessgw.plugin.opcua import ChangeHandler, DataChange
from bessgw.southbound.opcua.endpoint import OpcUaEndpoint, Subscriber


class OpcUaUnitLink:
    """One unit's root object on a shared endpoint; paths are relative to it (see :mod:`bessgw.plugin.opcua`)."""

    def __init__(self, endpoint: OpcUaEndpoint, device: OpcUaDeviceLink) -> None:
        self.endpoint = endpoint
        self.namespace_uri = device.namespace_uri
        self.root = tuple(part for part in device.object_path.split("/") if part)

    @property
    def available(self) -> bool:
        return self.endpoint.serves(id(self))

    @property
    def unavailable_reason(self) -> str:
        """Why :attr:`available` is False (for error messages), or ``""``."""
        if self.available:
            return ""
        return self.endpoint.subscribe_errors.get(id(self)) or self.endpoint.last_error or "subscribing"

    def subscribe(self, paths: Sequence[str], handler: ChangeHandler) -> None:
        self.endpoint.add_subscriber(id(self), Subscriber(self.namespace_uri, self.root, tuple(paths), handler))
        self.endpoint.ensure_started()

    def unsubscribe(self) -> None:
        self.endpoint.remove_subscriber(id(self))

    async def read(self, paths: Sequence[str]) -> list[DataChange]:
        return await self.endpoint.read(self.namespace_uri, self.root, paths)

    async def write(self, path: str, value: Any, kind: str = "double") -> None:
        await self.endpoint.write(self.namespace_uri, self.root, path, value, kind)

    async def call(self, method: str, *args: Any) -> list[Any]:
        return await self.endpoint.call(self.namespace_uri, self.root, method, args)
