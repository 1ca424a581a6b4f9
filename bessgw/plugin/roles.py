"""The roles a plugin can fill: vendor drivers, chemistry models, simulators, telemetry observers.

These base classes are the public contract. Plugins subclass them; core only ever talks to plugin code
through them (and through the hooks in :mod:`bessgw.plugin.hookspecs` that hand them over).
"""

from __future__ import annotations

import abc
import argparse
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from bessgw.model import Capability, ChemistryEnvelope, Setpoint, Telemetry

# ---------------------------------------------------------------------------------------- chemistry


class EquivalentCircuit(Protocol):
    """State of ``n`` cells/units under a Thevenin model (OCV + R0 + one RC pair, lumped thermal).

    Arrays have shape ``(n,)``. ``step`` advances the model by ``dt_s`` under the pack powers ``p_kw``
    (generator convention: positive discharges). Used by simulators and by what-if computations.
    """

    soc_pct: np.ndarray
    temp_c: np.ndarray
    pack_v: np.ndarray
    pack_a: np.ndarray
    cell_v: np.ndarray

    def step(self, p_kw: np.ndarray, dt_s: float, ambient_c: float | np.ndarray = 25.0) -> None:
        """Advance the state by ``dt_s`` seconds at the given powers."""
        ...


class ChemistryModel(abc.ABC):
    """A cell chemistry: its OCV curve, usable window, C-rate limits, thermal derating, efficiency.

    Subclasses set the class attributes and implement the vectorised curves; :meth:`envelope` turns them
    into the :class:`~bessgw.model.ChemistryEnvelope` that negotiation intersects with the vendor offer.
    All curve methods accept floats or numpy arrays and return numpy arrays (broadcasting).
    """

    #: short lower-case id used in config and in vendor offers, e.g. ``"lfp"``
    name: str = ""
    description: str = ""
    #: usable SOC window in percent
    soc_min_pct: float = 0.0
    soc_max_pct: float = 100.0
    #: cell temperature window in °C outside which no current is allowed
    temp_min_c: float = -20.0
    temp_max_c: float = 55.0
    #: continuous C-rate limits at 25 °C, mid SOC
    max_charge_c: float = 1.0
    max_discharge_c: float = 1.0
    round_trip_efficiency: float = 0.9
    #: cell voltage limits and nominal (per cell, V)
    cell_v_min: float = 2.5
    cell_v_max: float = 3.65
    cell_v_nominal: float = 3.2

    @abc.abstractmethod
    def ocv(self, soc_pct: np.ndarray | float) -> np.ndarray:
        """Open-circuit cell voltage at ``soc_pct``."""

    @abc.abstractmethod
    def charge_derating(self, temp_c: np.ndarray | float, soc_pct: np.ndarray | float) -> np.ndarray:
        """Factor 0..1 applied to :attr:`max_charge_c`; must be monotone in temperature beyond limits."""

    @abc.abstractmethod
    def discharge_derating(self, temp_c: np.ndarray | float, soc_pct: np.ndarray | float) -> np.ndarray:
        """Factor 0..1 applied to :attr:`max_discharge_c`."""

    @abc.abstractmethod
    def equivalent_circuit(
        self,
        count: int,
        energy_kwh: float | np.ndarray,
        *,
        soc_pct: float | np.ndarray = 50.0,
        temp_c: float | np.ndarray = 25.0,
    ) -> EquivalentCircuit:
        """A fresh vectorised equivalent-circuit model of ``count`` units of this chemistry."""

    def envelope(self, soc_pct: float, temp_c: float) -> ChemistryEnvelope:
        """What this chemistry allows at one operating point (used by negotiation)."""
        # NaN from a model (e.g. outside its tables) must mean "no current", never an invalid envelope
        charge = float(np.clip(np.nan_to_num(self.charge_derating(temp_c, soc_pct), nan=0.0), 0.0, 1.0))
        discharge = float(np.clip(np.nan_to_num(self.discharge_derating(temp_c, soc_pct), nan=0.0), 0.0, 1.0))
        return ChemistryEnvelope(
            chemistry=self.name,
            soc_min_pct=self.soc_min_pct,
            soc_max_pct=self.soc_max_pct,
            max_charge_c=self.max_charge_c * charge,
            max_discharge_c=self.max_discharge_c * discharge,
            temp_min_c=self.temp_min_c,
            temp_max_c=self.temp_max_c,
            charge_derating=charge,
            discharge_derating=discharge,
        )


# ------------------------------------------------------------------------------------------ drivers


class Logger(Protocol):
    """The logging calls a plugin may make (a structlog bound logger in the daemon)."""

    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...


@dataclass(frozen=True)
class DriverContext:
    """Everything a driver instance gets from core for one unit.

    :ivar unit_id: the unit's id from config.
    :ivar link: the transport the unit sits behind (a :class:`~bessgw.plugin.RegisterLink` for
        ``transport="modbus"``, a :class:`~bessgw.plugin.CanLink` for ``"can"``, ``None`` for
        ``"none"``). Core owns its connection, reconnection and timeouts.
    :ivar options: the unit's ``options`` table, validated by the driver's ``unit_options`` model.
    :ivar plugin_options: the ``plugins.<name>`` table, validated by ``plugin_options``.
    :ivar log: a logger bound to the unit.
    :ivar clock: wall-clock seconds (``time.time`` in production; tests may pass a fake).
    """

    unit_id: str
    link: Any
    options: Any = None
    plugin_options: Any = None
    log: Logger | None = None
    clock: Callable[[], float] = time.time


class VendorDriver(abc.ABC):
    """Turns one unit's protocol traffic into :class:`Telemetry` and applies :class:`Setpoint`s.

    One instance per unit, created by the :class:`DriverSpec` factory. The unit's supervisor is its only
    caller and serialises every call: no two methods (``heartbeat`` included) ever run at once. Raise
    :class:`bessgw.plugin.DeviceError` subclasses for device trouble; core turns them into quality
    and reconnect decisions.
    """

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self._offer: Capability | None = None

    @abc.abstractmethod
    async def identify(self) -> Capability:
        """Read the unit's identity and return its capability offer.

        Called after every (re)connection. Raise :class:`IncompatibleDeviceError` with a reason for a
        firmware or protocol the driver does not support.
        """

    @abc.abstractmethod
    async def read(self) -> Telemetry:
        """Return the unit's present telemetry (poll it, or return the latest pushed values)."""

    @abc.abstractmethod
    async def write_setpoint(self, setpoint: Setpoint) -> None:
        """Write active/reactive power; values arrive already clamped to the effective limits."""

    async def heartbeat(self) -> None:
        """Keep the device-side watchdog alive. Called every ``heartbeat_interval_s`` while healthy."""

    async def set_running(self, running: bool) -> None:
        """Start (True) or stop (False) the power conversion."""
        raise NotImplementedError(f"{type(self).__name__} cannot start/stop the unit")

    async def reset_fault(self) -> None:
        """Acknowledge and reset latched faults."""
        raise NotImplementedError(f"{type(self).__name__} cannot reset faults")

    def current_offer(self) -> Capability | None:
        """The latest capability offer; drivers whose device publishes live limits update it.

        Core re-runs negotiation whenever the returned object changes (compared by value).
        """
        return self._offer

    async def close(self) -> None:
        """Release what the driver holds (the link itself is closed by core)."""


@dataclass(frozen=True)
class DriverSpec:
    """A vendor driver as registered by ``register_drivers``.

    :ivar name: the id used in config (``units[i].driver``); unique across all plugins.
    :ivar transport: ``"modbus"``, ``"can"``, ``"opcua"`` or ``"none"``: which link core builds.
    :ivar factory: called once per unit with its :class:`DriverContext`.
    :ivar unit_options: pydantic model for the unit's ``options`` table (errors name its keys).
    :ivar plugin_options: pydantic model for the ``plugins.<name>`` table.
    :ivar min_protocol_version: units offering an older protocol version are refused.
    """

    name: str
    transport: str
    factory: Callable[[DriverContext], VendorDriver]
    unit_options: type | None = None
    plugin_options: type | None = None
    min_protocol_version: str = "0"
    description: str = ""


# ------------------------------------------------------------------------------------- simulators


@dataclass(frozen=True)
class SimulatorContext:
    """What core hands a running simulator.

    :ivar chemistries: every installed chemistry model by name, to drive the physics.
    :ivar ready: call once the simulator listens; ``bessgw sim`` then prints ``ready``.
    :ivar log: a logger.
    """

    chemistries: Mapping[str, ChemistryModel]
    ready: Callable[[], None]
    log: Logger | None = None


@dataclass(frozen=True)
class SimulatorSpec:
    """A device simulator, started by ``bessgw sim <name> ...`` or from a config's ``[[simulators]]``.

    :ivar add_arguments: adds the simulator's own command-line options to an argparse parser.
    :ivar run: coroutine that serves until cancelled (SIGTERM cancels it), calling ``context.ready()``
        once it accepts traffic; it must release its sockets when cancelled.
    """

    name: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, SimulatorContext], Awaitable[None]]
    description: str = ""

    def parse_args(self, argv: list[str], *, interactive: bool = True) -> argparse.Namespace:
        """Parse the simulator's arguments; raises ``ValueError`` with argparse's message on bad input.

        ``interactive=False`` (arguments from a config file): no ``--help``, and an option that would
        print and exit (``--help``, ``--version``) is a ``ValueError`` instead of ending the process.
        """
        parser = _RaisingParser(prog=f"bessgw sim {self.name}", description=self.description,
                                add_help=interactive)
        parser.may_exit = interactive
        self.add_arguments(parser)
        return parser.parse_args(argv)


class _RaisingParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of exiting, so a config's simulator args can be checked."""

    may_exit = True

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if not self.may_exit:
            raise ValueError(message or "this option prints and exits; it has no place in a config")
        super().exit(status, message)

    def _print_message(self, message: str, file=None) -> None:  # type: ignore[no-untyped-def]
        if self.may_exit:  # a config check prints nothing: the ValueError above says what is wrong
            super()._print_message(message, file)


# -------------------------------------------------------------------------------------- observers


@runtime_checkable
class TelemetryObserver(Protocol):
    """Receives every telemetry update of every unit (after quality has been decided).

    Called synchronously in the unit's task: keep it cheap (append to a buffer, update a gauge) and
    never block; hand slow work to a task of your own. Exceptions are logged and counted, not raised.
    """

    def on_telemetry(self, telemetry: Telemetry) -> None: ...
