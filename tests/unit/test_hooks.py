"""One behavioural test per hook: what a plugin implementing it gets from the gateway."""

from __future__ import annotations

import asyncio
import types
from dataclasses import replace

import structlog

from bessgw.compat import timeout
from bessgw.config import UnitDefaults
from bessgw.model import EffectiveLimits, Quality, SiteLimits, Telemetry
from bessgw.plugin import DriverContext, SimulatorSpec, hookimpl
from bessgw.plugin.manager import build_plugin_manager
from bessgw.unit.supervisor import UnitSupervisor

FAST = UnitDefaults(poll_interval_s=0.01, stale_after_s=1.0, bad_after_s=2.0, heartbeat_interval_s=0.05)


def plugin(**hooks) -> types.SimpleNamespace:
    return types.SimpleNamespace(BESSGW_PLUGIN_API="1.0", **{k: hookimpl(v) for k, v in hooks.items()})


def supervisor_for(pm, registry, unit_id: str = "mem-1") -> UnitSupervisor:
    spec = registry.drivers["in_memory"]
    options = spec.unit_options(energy_kwh=1000, power_kw=500, soc_pct=50)
    driver = spec.factory(DriverContext(unit_id=unit_id, link=None, options=options))
    return UnitSupervisor(unit_id, driver, spec, FAST, SiteLimits(), registry.chemistries,
                          pm=pm, observers=registry.observers, log=structlog.get_logger())


async def run_until(supervisor: UnitSupervisor, condition, timeout_s: float = 5.0) -> None:
    task = asyncio.create_task(supervisor.run())
    try:
        async with timeout(timeout_s):
            while not condition():
                await supervisor.wait_update(timeout_s)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_hook_register_chemistries() -> None:
    registry = build_plugin_manager().collect()
    lfp = registry.chemistries["lfp"]
    envelope = lfp.envelope(50.0, 25.0)
    assert envelope.chemistry == "lfp" and envelope.max_charge_c > 0


def test_hook_register_drivers(plugin_path) -> None:
    registry = build_plugin_manager(modules=["bessgw_example"]).collect()
    spec = registry.drivers["in_memory"]
    assert spec.transport == "none"
    assert any(r.kind == "driver" and r.name == "in_memory" and r.plugin == "bessgw_example"
               for r in registry.reports)


def test_hook_register_simulators() -> None:
    async def run(args, context):
        context.ready()

    spec = SimulatorSpec(name="toy", add_arguments=lambda p: p.add_argument("--port", type=int), run=run)
    pm = build_plugin_manager(load_entry_points=False,
                              plugins=[("toy_sim", plugin(register_simulators=lambda: [spec]))])
    registry = pm.collect()
    assert registry.simulators["toy"].parse_args(["--port", "5020"]).port == 5020


def test_hook_register_telemetry_observers(plugin_path) -> None:
    seen: list[Telemetry] = []
    observer = types.SimpleNamespace(on_telemetry=seen.append)
    pm = build_plugin_manager(modules=["bessgw_example"],
                              plugins=[("obs", plugin(register_telemetry_observers=lambda: [observer]))])
    registry = pm.collect()
    supervisor = supervisor_for(pm, registry)
    asyncio.run(run_until(supervisor, lambda: len(seen) >= 3))
    assert all(t.unit_id == "mem-1" and t.quality is Quality.GOOD for t in seen[:3])


def test_hook_adjust_limits(plugin_path) -> None:
    calls: list[str] = []

    def adjust_limits(unit_id, capability, limits: EffectiveLimits, telemetry):
        calls.append(unit_id)
        # try to widen charge (must be ignored) and narrow discharge (must apply)
        return replace(limits, max_charge_kw=limits.max_charge_kw * 10, max_discharge_kw=123.0)

    pm = build_plugin_manager(modules=["bessgw_example"],
                              plugins=[("transformer", plugin(adjust_limits=adjust_limits))])
    registry = pm.collect()
    supervisor = supervisor_for(pm, registry)
    asyncio.run(run_until(supervisor, lambda: supervisor.limits is not None))
    assert calls and calls[0] == "mem-1"
    assert supervisor.limits.max_discharge_kw == 123.0
    assert supervisor.limits.reason("max_discharge_kw") == "plugin transformer"
    assert supervisor.limits.max_charge_kw <= 500.0  # never widened beyond the offer
