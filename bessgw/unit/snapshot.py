"""One immutable view of a unit: everything the upper layers (control, federation, northbound) may know.

The supervisor hands out the same :class:`UnitSnapshot` object until something in it changes, so a reader
can tell "nothing new" by identity (``snap is last``) without comparing fields.
"""

from __future__ import annotations

from dataclasses import dataclass

from bessgw.model import Capability, EffectiveLimits, Telemetry


@dataclass(frozen=True, slots=True)
class UnitSnapshot:
    """A unit at one moment.

    :ivar telemetry: the latest telemetry with its quality already decided by age.
    :ivar capability: the unit's latest offer, ``None`` before the first identification.
    :ivar limits: the negotiated effective limits, ``None`` while not negotiated or refused.
    :ivar refused_reason: why negotiation refused the unit (empty when accepted).
    :ivar connected: whether the unit's session is up (identified and polling).
    :ivar stale_after_s: the unit's stale limit, so control can judge the data's age itself.
    """

    unit_id: str
    telemetry: Telemetry
    capability: Capability | None
    limits: EffectiveLimits | None
    refused_reason: str
    connected: bool
    stale_after_s: float = 2.0

    @property
    def commandable(self) -> bool:
        """Connected and negotiated: a setpoint can be written (whether it should is control's call)."""
        return self.connected and self.limits is not None
