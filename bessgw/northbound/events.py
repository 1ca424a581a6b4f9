"""Unit alarms as OPC UA events, beside the ``AlarmNames`` / ``Alarms`` variables.

An operator's event view (UaExpert, SCADA alarm lists) wants one event when an alarm comes and one when
it goes, not a variable to watch. Each change of a unit's decoded alarm set fires a ``UnitAlarmEventType``
event per alarm raised or cleared, with the unit as SourceNode and the measurement time as Time. asyncua
delivers events only to subscribers of the emitting node, so each event is emitted from the gateway
object and from the Server object (where generic clients subscribe).
"""

from __future__ import annotations

import datetime as dt

from asyncua import Server, ua
from asyncua.server.event_generator import EventGenerator

#: OPC UA severities (1..1000): raised alarms are high, clearing is informational
SEVERITY_RAISED = 700
SEVERITY_CLEARED = 100


class AlarmEvents:
    """Fires ``UnitAlarmEventType`` events for raised and cleared unit alarms."""

    def __init__(self) -> None:
        self._generators: list[EventGenerator] = []
        self.fired = 0

    async def setup(self, server: Server, ns: int, gateway: ua.NodeId) -> None:
        event_type = await server.create_custom_event_type(
            ns, "UnitAlarmEventType", ua.ObjectIds.BaseEventType,
            [("UnitId", ua.VariantType.String), ("AlarmName", ua.VariantType.String),
             ("Active", ua.VariantType.Boolean)],
        )
        for emitter in (gateway, ua.NodeId(ua.ObjectIds.Server)):
            self._generators.append(await server.get_event_generator(event_type, emitter))

    async def changed(self, unit_id: str, unit_node: ua.NodeId, raised: set[str], cleared: set[str],
                      when: dt.datetime) -> None:
        for name, active in [*((n, True) for n in sorted(raised)), *((n, False) for n in sorted(cleared))]:
            message = f"unit {unit_id}: alarm {name} {'raised' if active else 'cleared'}"
            for generator in self._generators:
                event = generator.event
                event.SourceNode = unit_node
                event.SourceName = unit_id
                event.Severity = SEVERITY_RAISED if active else SEVERITY_CLEARED
                event.UnitId = unit_id
                event.AlarmName = name
                event.Active = active
                await generator.trigger(time_attr=when, message=message)
            self.fired += 1
