"""The vendor_a simulator: N containers, each a real Modbus TCP server, driven by one physics model.

Started as ``bessgw sim vendor_a --port PORT [--count N] [--firmware v1|v2]`` (container ``i`` listens on
``PORT + i``; ``--port 0`` lets each pick a free port, which tests use), or in-process through
:class:`VendorASimulator`, whose ``containers[i]`` expose the fault knobs.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Mapping

from bessgw.plugin import ChemistryModel, PluginError, SimulatorContext, SimulatorSpec
from bessgw_vendor_a.container import ContainerServer
from bessgw_vendor_a.physics import Fleet


class VendorASimulator:
    """A fleet of simulated vendor_a containers; use ``async with`` (or :meth:`start` / :meth:`stop`)."""

    def __init__(
        self,
        chemistry: ChemistryModel,
        *,
        count: int = 1,
        port: int = 0,
        host: str = "127.0.0.1",
        firmware: str = "v2",
        step_hz: float = 10.0,
        watchdog_s: float = 5.0,
        rated_power_kw: float = 2500.0,
        energy_kwh: float = 5000.0,
        soc_pct: float = 50.0,
        ambient_c: float = 25.0,
    ) -> None:
        if not 0 < step_hz <= 1000:
            raise ValueError("step_hz must be within (0, 1000]")
        self.fleet = Fleet(count, chemistry, firmware=firmware, rated_power_kw=rated_power_kw,
                           energy_kwh=energy_kwh, soc_pct=soc_pct, ambient_c=ambient_c,
                           watchdog_s=watchdog_s)
        self.step_s = 1.0 / step_hz
        self.containers = [
            ContainerServer(self.fleet, index, host, port + index if port else 0) for index in range(count)
        ]
        self.steps = 0
        self._physics: asyncio.Task[None] | None = None

    @property
    def ports(self) -> list[int]:
        return [container.port for container in self.containers]

    async def start(self) -> None:
        """Listen on every port, then start the controller cycle."""
        try:
            for container in self.containers:
                await container.start()
        except BaseException:
            await self.stop()
            raise
        loop = asyncio.get_running_loop()
        self.fleet.step(0.0, loop.time())
        self._physics = loop.create_task(self._cycle(), name="vendor_a-physics")

    async def stop(self) -> None:
        task, self._physics = self._physics, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # our own cancel is absorbed, not the caller's
        for container in self.containers:
            await container.stop()

    async def __aenter__(self) -> VendorASimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _cycle(self) -> None:
        """Step the physics at a fixed rate, skipping (not bursting) missed slots under load."""
        loop = asyncio.get_running_loop()
        last = next_at = loop.time()
        while True:
            next_at += self.step_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            now = loop.time()
            if now - next_at > self.step_s:
                next_at = now
            self.fleet.step(min(now - last, 1.0), now)
            last = now
            self.steps += 1


# ----------------------------------------------------------------------------- the CLI face


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True,
                        help="TCP port of the first container; container i listens on PORT+i (0: any free)")
    parser.add_argument("--count", type=int, default=1, help="number of containers (default 1)")
    parser.add_argument("--firmware", choices=("v1", "v2"), default="v2", help="register map generation")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--chemistry", choices=("lfp", "nmc"), default="lfp")
    parser.add_argument("--rated-power-kw", type=float, default=2500.0)
    parser.add_argument("--energy-kwh", type=float, default=5000.0)
    parser.add_argument("--soc-pct", type=float, default=50.0, help="initial state of charge")
    parser.add_argument("--watchdog-s", type=float, default=5.0,
                        help="standby when the gateway heartbeat register is unchanged this long")
    parser.add_argument("--step-hz", type=float, default=10.0, help="controller / physics rate")


def simulator_from_args(
    args: argparse.Namespace, chemistries: Mapping[str, ChemistryModel]
) -> VendorASimulator:
    chemistry = chemistries.get(args.chemistry)
    if chemistry is None:
        known = ", ".join(sorted(chemistries)) or "none installed"
        raise PluginError("vendor_a", f"simulator chemistry {args.chemistry!r} is not installed ({known})")
    if args.count < 1 or (args.port and args.port + args.count - 1 > 65535):
        raise PluginError("vendor_a", "simulator needs --count >= 1 and PORT+COUNT-1 <= 65535")
    return VendorASimulator(chemistry, count=args.count, port=args.port, host=args.host,
                            firmware=args.firmware, step_hz=args.step_hz, watchdog_s=args.watchdog_s,
                            rated_power_kw=args.rated_power_kw, energy_kwh=args.energy_kwh,
                            soc_pct=args.soc_pct)


async def run(args: argparse.Namespace, context: SimulatorContext) -> None:
    """Serve until cancelled; ``context.ready()`` once every container listens."""
    simulator = simulator_from_args(args, context.chemistries)
    async with simulator:
        if context.log is not None:
            context.log.info("vendor_a_simulator_listening", host=args.host, ports=simulator.ports,
                             firmware=args.firmware)
        context.ready()
        await asyncio.Event().wait()


SPEC = SimulatorSpec(
    name="vendor_a",
    add_arguments=add_arguments,
    run=run,
    description="vendor_a containers (Modbus TCP, firmware v1/v2) driven by a chemistry model",
)
