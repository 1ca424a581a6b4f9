"""Every hook a bessgw plugin can implement.

Hooks are synchronous registrations, called once when the plugin manager is collected at start-up and
again on a config reload (SIGHUP). They hand core objects (drivers, chemistry models, simulators,
observers) whose methods run on the hot path; core never calls ``pm.hook.*`` per poll. The one exception
is :func:`adjust_limits`, called on every (re)negotiation of a unit, which is rare (capability or
operating-point changes, at most once per poll).

Implement a hook with :data:`bessgw.plugin.hookimpl`::

    from bessgw.plugin import hookimpl

    @hookimpl
    def register_chemistries():
        return [MyChemistry()]
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from bessgw.model import Capability, EffectiveLimits, Telemetry
    from bessgw.plugin.roles import ChemistryModel, DriverSpec, SimulatorSpec, TelemetryObserver

PROJECT_NAME = "bessgw"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_chemistries() -> Iterable[ChemistryModel]:
    """Return the chemistry models this plugin provides.

    Called once per plugin-manager collection (start-up and every reload). No I/O.

    :returns: chemistry model instances; each ``name`` must be unique across all plugins, otherwise
        start-up fails naming both plugins.
    """


@hookspec
def register_drivers() -> Iterable[DriverSpec]:
    """Return the vendor drivers this plugin provides.

    Called once per plugin-manager collection (start-up and every reload). No I/O: drivers connect when
    core calls their instances' async methods.

    :returns: :class:`~bessgw.plugin.DriverSpec` objects; each ``name`` must be unique across plugins.
    """


@hookspec
def register_simulators() -> Iterable[SimulatorSpec]:
    """Return the device simulators this plugin ships (for demos, tests and plugin authors).

    Called by ``bessgw sim`` and by the daemon when a config has ``[[simulators]]``. No I/O.

    :returns: :class:`~bessgw.plugin.SimulatorSpec` objects; each ``name`` must be unique.
    """


@hookspec
def register_telemetry_observers() -> Iterable[TelemetryObserver]:
    """Return objects that want to see every telemetry update.

    Called once per collection; no I/O here. The returned observers' ``on_telemetry`` runs in the unit
    tasks for every update, so it must be cheap and must not block (no I/O: hand slow work such as
    writing to a database to a task or thread of your own).

    :returns: objects with an ``on_telemetry(telemetry)`` method.
    """


@hookspec
def adjust_limits(
    unit_id: str, capability: Capability, limits: EffectiveLimits, telemetry: Telemetry | None
) -> EffectiveLimits | None:
    """Narrow a unit's negotiated limits (e.g. a warranty rule, a transformer limit, an aged string).

    Called after every negotiation of a unit (when it connects, and whenever its offer, SOC or
    temperature changes its limits). Synchronous and without I/O: it runs in the unit's task.

    :param unit_id: the unit's id from config.
    :param capability: the vendor driver's current offer.
    :param limits: the limits negotiated from offer, chemistry envelope and site config.
    :param telemetry: the latest telemetry, or ``None`` before the first poll.
    :returns: stricter limits, or ``None`` to leave them. Core applies a result only where it is
        stricter than ``limits``; a plugin cannot widen the envelope.
    """
