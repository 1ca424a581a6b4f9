"""The transport role: one kind of southbound link (Modbus TCP, CAN, OPC UA) shared by many units.

A transport hands each unit's driver a *link* (the object the plugin API describes, e.g.
:class:`bessgw.plugin.RegisterLink`), shares physical connections between units behind the same endpoint
or bus, and supervises them: connection, timeouts, reconnection with jittered backoff, circuit breaking.
No library type (pymodbus, python-can, asyncua) leaves a transport: library errors are wrapped in
:class:`bessgw.errors.DeviceError` subclasses.
"""

from __future__ import annotations

import abc
import asyncio
import importlib
from typing import Any, ClassVar

from bessgw.config import Config, UnitSection
from bessgw.plugin.roles import Logger

#: transport name -> "module:Class", imported on first use so an unused protocol stack costs nothing
TRANSPORTS: dict[str, str] = {
    "modbus": "bessgw.southbound.modbus.transport:ModbusTransport",
    "can": "bessgw.southbound.can.transport:CanTransport",
    "opcua": "bessgw.southbound.opcua.transport:OpcUaTransport",
}


class Transport(abc.ABC):
    """Owns every physical link of one protocol for one gateway."""

    name: ClassVar[str] = ""

    def __init__(self, config: Config, log: Logger) -> None:
        self.config = config
        self.log = log
        #: set by :meth:`run` once every link it has is supervised; the daemon sends READY=1 after it
        self.started = asyncio.Event()

    @abc.abstractmethod
    def link_for(self, unit: UnitSection) -> Any:
        """The link object handed to ``unit``'s driver (shares the connection with its endpoint)."""

    def release(self, unit: UnitSection) -> None:
        """Forget ``unit`` (removed by a reload); its endpoint closes when no unit uses it."""

    async def run(self) -> None:
        """Supervise links (readers, keep-alives) until cancelled, setting :attr:`started` once they are.

        Default: nothing to supervise.
        """
        self.started.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        """Close every connection; bounded in time by the caller."""


class NoTransport(Transport):
    """For drivers that need no link (``transport = "none"``: in-memory drivers, tests)."""

    name = "none"

    def link_for(self, unit: UnitSection) -> None:
        return None


def build_transport(name: str, config: Config, log: Logger) -> Transport:
    """Instantiate the transport called ``name`` (``"none"``, ``"modbus"``, ``"can"``...)."""
    if name == "none":
        return NoTransport(config, log)
    target = TRANSPORTS.get(name)
    if target is None:
        raise ValueError(f"unknown transport {name!r} (known: none, {', '.join(sorted(TRANSPORTS))})")
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(config, log)
