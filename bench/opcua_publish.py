"""The publisher's cost per changed value against bare asyncua ``write_attribute_value``, in one process.

Why: ``bench/opcua_north.py`` measures the publisher inside a live gateway (polls, control, a client), which
is the figure that counts but takes two minutes and moves with the machine's load. This is the inner loop
alone, quick enough to profile and to repeat: an asyncua address space built and compacted as
``OpcUaServer`` builds it (the server is never started: no sockets), ``UNITS`` units whose telemetry
changes as ``bench/opcua_north.py``'s noisy batteries' does (7 analog values beyond any deadband each
cycle, the other 16 variables unchanged), no subscriber.

Each round, in turn and on the same nodes:

* **publisher** — ``Publisher.publish_once()`` over every unit (a new snapshot per unit, built before the
  clock starts): change detection, DataValue building, timestamps, storing; divided by the values written;
* **bare** — ``server.write_attribute_value`` of a prebuilt DataValue (built before the clock starts) to
  the same 7 variables of every unit: the cheapest way through asyncua's API, the target's baseline;
* **bare_built** — the same, with the DataValue built inside the clock the way asyncua's API asks for
  (``ua.DataValue(ua.Variant(value, VariantType.Double), StatusCode=..., SourceTimestamp=...,
  ServerTimestamp=...)``): what a straightforward publisher pays per value.

Times are this thread's CPU time (``time.thread_time``: being preempted by other processes of a shared
machine does not count; their cache pollution still does). The ratio publisher / bare is taken per round
and its median reported (the sides alternate within each round, so load falls on both alike).
``--profile`` prints a cProfile summary of the publisher rounds instead of timing them.

Run: ``.venv/bin/python bench/opcua_publish.py [--units 200] [--rounds 30] [--profile]``; ends with one
JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import gc
import json
import os
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: the values a noisy battery's poll changes (bench/opcua_north.py ``NoisyBattery``)
CHANGING = ("DcVoltageV", "DcCurrentA", "ReactivePowerKvar", "CellTempMinC", "CellTempMaxC", "CellVoltageMinV",
            "CellVoltageMaxV")


class _Supervisor:
    """Hands the publisher a prepared snapshot (the publisher only calls ``snapshot()``)."""

    def __init__(self, unit_id: str) -> None:
        self.unit_id = unit_id
        self.snap: Any = None

    def snapshot(self) -> Any:
        return self.snap


async def _build(units: int) -> tuple[Any, Any, list[_Supervisor], list[Any]]:
    from asyncua import Server

    from bessgw.model import Capability, EffectiveLimits
    from bessgw.northbound import information_model as model
    from bessgw.northbound.compaction import Compactor
    from bessgw.northbound.publisher import Publisher

    server = Server()
    await server.init()
    types = await model.create_types(server)
    gateway = await model.create_gateway(server, types, "gw")
    publisher = Publisher(server, 0.5, {}, 0.0)
    publisher.set_gateway(gateway, "gw")
    compactor = Compactor(server.iserver.aspace)
    compactor.compact()
    capability = Capability(max_charge_kw=500.0, max_discharge_kw=500.0, energy_kwh=1000.0, chemistry="lfp")
    limits = EffectiveLimits(500.0, 500.0, 250.0, 5.0, 95.0, 100.0, -10.0, 50.0)
    supervisors, instances = [], []
    for index in range(units):
        supervisor = _Supervisor(f"u{index:03d}")
        instance = await model.create_unit(server, types, gateway, "gw", supervisor.unit_id, lambda m, u: None)
        compactor.compact(model.instance_nodeids(server, instance))
        publisher.add(supervisor, instance)  # type: ignore[arg-type]
        supervisors.append(supervisor)
        instances.append(instance)
    _next_snapshots(supervisors, capability, limits, 0)
    await publisher.publish_once()  # first values, EURanges: not what is measured
    return server, publisher, supervisors, instances, (capability, limits)  # type: ignore[return-value]


def _next_snapshots(supervisors: list[_Supervisor], capability: Any, limits: Any, cycle: int) -> None:
    """A new poll for every unit: what a NoisyBattery's read and the supervisor hand out."""
    from bessgw.model import Telemetry, UnitState
    from bessgw.unit.snapshot import UnitSnapshot

    noise = random.random
    now = time.time()
    for supervisor in supervisors:
        telemetry = Telemetry(unit_id=supervisor.unit_id, timestamp=now, state=UnitState.RUNNING, soc_pct=60.0,
                              soh_pct=100.0, p_kw=0.0, q_kvar=noise(), dc_v=800.0 + noise(), dc_a=noise(),
                              cell_temp_min_c=24.0 + noise(), cell_temp_max_c=26.0 + noise(),
                              cell_v_min=3.30 + noise() / 100, cell_v_max=3.34 + noise() / 100)
        supervisor.snap = UnitSnapshot(supervisor.unit_id, telemetry, capability, limits, "", True)


async def _measure(units: int, rounds: int, profile: bool) -> dict[str, Any]:
    from asyncua import ua

    server, publisher, supervisors, instances, (capability, limits) = await _build(units)
    nodes = [instance.child(name) for instance in instances for name in CHANGING]
    write = server.write_attribute_value
    good = ua.StatusCode(ua.StatusCodes.Good)
    ours: list[float] = []
    written = 0
    bare: list[float] = []
    built: list[float] = []
    profiler = cProfile.Profile() if profile else None
    gc.collect()
    for cycle in range(1, rounds + 1):
        _next_snapshots(supervisors, capability, limits, cycle)
        written0 = publisher.values_written
        if profiler is not None:
            profiler.enable()
        started = time.thread_time()
        await publisher.publish_once()
        spent = time.thread_time() - started
        if profiler is not None:
            profiler.disable()
        written += publisher.values_written - written0
        ours.append(spent / max(1, publisher.values_written - written0) * 1e6)

        now = dt.datetime.now(dt.timezone.utc)
        values = [ua.DataValue(ua.Variant(random.random(), ua.VariantType.Double), StatusCode=good,
                               SourceTimestamp=now, ServerTimestamp=now) for _ in nodes]
        started = time.thread_time()
        for node, value in zip(nodes, values, strict=True):
            await write(node, value)
        bare.append((time.thread_time() - started) / len(nodes) * 1e6)

        started = time.thread_time()
        now = dt.datetime.now(dt.timezone.utc)
        for node in nodes:
            await write(node, ua.DataValue(ua.Variant(random.random(), ua.VariantType.Double), StatusCode=good,
                                           SourceTimestamp=now, ServerTimestamp=now))
        built.append((time.thread_time() - started) / len(nodes) * 1e6)
        await asyncio.sleep(0)
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("tottime").print_stats(18)
        stats.sort_stats("cumulative").print_stats(12)
    ratios = [a / b for a, b in zip(ours, bare, strict=True)]
    return {
        "units": units, "rounds": rounds, "values_per_round": round(written / rounds),
        "publisher_us_per_value": round(statistics.median(ours), 3),
        "bare_us_per_value": round(statistics.median(bare), 3),
        "bare_built_us_per_value": round(statistics.median(built), 3),
        "ratio_vs_bare": round(statistics.median(ratios), 3),
        "ratio_vs_bare_built": round(statistics.median(a / b for a, b in zip(ours, built, strict=True)), 3),
        "profiled": profile,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="cProfile the publisher rounds (timings then inflated)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    load_before = os.getloadavg()
    figures = asyncio.run(_measure(args.units, args.rounds, args.profile))
    figures["loadavg_before"] = [round(x, 2) for x in load_before]
    figures["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(f"{figures['units']} units, {figures['values_per_round']} values written per round, "
          f"median of {figures['rounds']} rounds (load {figures['loadavg_before'][0]}):")
    print(f"  publisher       {figures['publisher_us_per_value']} us/value")
    print(f"  bare prebuilt   {figures['bare_us_per_value']} us/value  -> ratio {figures['ratio_vs_bare']}"
          f" (target <= 1.5)")
    print(f"  bare + building {figures['bare_built_us_per_value']} us/value  -> ratio "
          f"{figures['ratio_vs_bare_built']}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
