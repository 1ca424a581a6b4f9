"""The directory of running units: what the upper layers (control, federation, northbound) see.

The daemon adds and removes units as config reloads change them; listeners (e.g. the OPC UA server
creating and deleting nodes) are told synchronously. Upper layers read snapshots and call ``apply`` on
a unit's supervisor; they never touch drivers or transports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bessgw.unit.snapshot import UnitSnapshot
from bessgw.unit.supervisor import UnitSupervisor

Listener = Callable[[str, "UnitSupervisor | None"], None]


class UnitDirectory:
    """Unit id -> running :class:`UnitSupervisor`, with change notification."""

    def __init__(self) -> None:
        self._units: dict[str, UnitSupervisor] = {}
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener(unit_id, supervisor)`` on add and ``listener(unit_id, None)`` on removal."""
        self._listeners.append(listener)

    def add(self, supervisor: UnitSupervisor) -> None:
        self._units[supervisor.unit_id] = supervisor
        self._notify(supervisor.unit_id, supervisor)

    def remove(self, unit_id: str) -> None:
        if self._units.pop(unit_id, None) is not None:
            self._notify(unit_id, None)

    def get(self, unit_id: str) -> UnitSupervisor | None:
        return self._units.get(unit_id)

    def __iter__(self) -> Iterator[UnitSupervisor]:
        return iter(list(self._units.values()))

    def __len__(self) -> int:
        return len(self._units)

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self._units

    def snapshots(self) -> list[UnitSnapshot]:
        return [supervisor.snapshot() for supervisor in self._units.values()]

    def _notify(self, unit_id: str, supervisor: UnitSupervisor | None) -> None:
        for listener in list(self._listeners):
            listener(unit_id, supervisor)
