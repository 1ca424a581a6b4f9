"""vendor_b as a plugin: what it registers, the conformance kit, and `bessgw sim vendor_b` as a process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path

import bessgw_vendor_b.plugin as plugin_module
import pytest
from asyncua import Client
from bessgw_vendor_b.addressspace import IDENTITY, NAMESPACE_URI, TELEMETRY
from bessgw_vendor_b.driver import FEATURES, VendorBUnitOptions

from bessgw.plugin import BessgwError, Quality
from bessgw.testing import DeviceUnderTest, DriverConformance, check_config, opcua_unit
from tests.plugins.vendor_b.harness import SimulatorThread, registry
from tests.ports import free_tcp_port

pytestmark = pytest.mark.integration  # asyncua servers on loopback and the simulator as a process

BESSGW = str(Path(sys.executable).with_name("bessgw"))
README = Path(plugin_module.__file__).resolve().parents[2] / "README.md"


@pytest.fixture(scope="module")
def sim_thread():
    thread = SimulatorThread(count=1, tick_s=0.05)
    yield thread
    thread.close()


def test_plugin_registers_an_opcua_driver_and_a_simulator():
    assert plugin_module.BESSGW_PLUGIN_API == "1.0"
    found = registry()
    driver = found.drivers["vendor_b"]
    assert driver.transport == "opcua" and driver.unit_options is VendorBUnitOptions
    args = found.simulators["vendor_b"].parse_args(["--port", "4850", "--count", "3"])
    assert (args.port, args.count, args.host) == (4850, 3, "127.0.0.1")
    with pytest.raises(ValueError, match="--port"):
        found.simulators["vendor_b"].parse_args([])


def test_config_requires_the_opcua_table_for_vendor_b():
    config = {"gateway": {"id": "g"}, "units": [{"id": "b", "driver": "vendor_b"}]}
    with pytest.raises(BessgwError, match=r"units\[0\]: driver 'vendor_b' talks opcua: add a \[units.opcua\] table"):
        check_config(config)
    config = {"gateway": {"id": "g"}, "units": [{"id": "b", "driver": "vendor_a", "opcua": {
        "endpoint": "opc.tcp://127.0.0.1:1/x", "namespace_uri": "u", "object_path": "a"}, "modbus": {}}]}
    with pytest.raises(BessgwError, match=r"units\[0\].opcua: driver 'vendor_a' does not use opcua"):
        check_config(config)


def test_offer_has_flow_battery_specifics_and_no_cold_charge_derating(sim_thread):
    async def scenario():
        async with _unit(sim_thread) as unit:
            await unit.wait_for(lambda u: u.commandable and u.telemetry.quality is Quality.GOOD, 15.0)
            return unit.capability, unit.telemetry

    offer, telemetry = asyncio.run(asyncio.wait_for(scenario(), 30.0))
    vrfb, lfp = registry().chemistries["vrfb"], registry().chemistries["lfp"]
    assert offer.chemistry == "vrfb" and {"electrolyte_temperature", "pump_state"} <= offer.features == FEATURES
    assert offer.soc_max_pct - offer.soc_min_pct == vrfb.soc_max_pct - vrfb.soc_min_pct
    assert {"electrolyte_temp_c", "pump_running"} <= set(telemetry.extra)
    # charging at 2 °C: LFP is derated for cold charging, the flow battery is not
    assert vrfb.envelope(50.0, 2.0).charge_derating > lfp.envelope(50.0, 2.0).charge_derating


def _unit(sim_thread: SimulatorThread):
    """The simulator's first container as a supervised vendor_b unit."""
    sim = sim_thread.sim
    return opcua_unit("vendor_b", sim.endpoint(0), NAMESPACE_URI, f"Containers/{sim.containers[0].name}")


class TestVendorBConformance(DriverConformance):
    driver_name = "vendor_b"

    @pytest.fixture
    def open_device(self, sim_thread):
        @contextlib.asynccontextmanager
        async def open_():
            async with _unit(sim_thread) as unit:
                yield DeviceUnderTest(unit, stop=lambda: sim_thread.acall(sim_thread.sim.stop()),
                                      start=lambda: sim_thread.acall(sim_thread.sim.start()))

        return open_


def test_bessgw_sim_serves_the_documented_address_space_and_stops_on_sigterm():
    async def scenario():
        port = free_tcp_port()
        with tempfile.TemporaryDirectory() as pki:
            process = await asyncio.create_subprocess_exec(
                BESSGW, "sim", "vendor_b", "--port", str(port), "--soc-pct", "61.5", "--pki-dir", pki,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
            try:
                line = await asyncio.wait_for(process.stdout.readline(), 30.0)
                assert line.decode().strip() == "ready"
                client = Client(f"opc.tcp://127.0.0.1:{port}/vendor_b", timeout=5)  # an independent client
                async with client:
                    ns = await client.get_namespace_index(NAMESPACE_URI)
                    root = await client.nodes.objects.get_child([f"{ns}:Containers", f"{ns}:VRFB-01"])
                    soc = await (await root.get_child([f"{ns}:Telemetry", f"{ns}:SocPct"])).read_value()
                    names = {(await node.read_browse_name()).Name
                             for node in await (await root.get_child(f"{ns}:Identity")).get_children()}
                assert soc == pytest.approx(61.5, abs=0.5) and names == set(IDENTITY)
                process.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(process.wait(), 15.0) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()

    asyncio.run(scenario())


def test_readme_documents_every_node():
    text = README.read_text(encoding="utf-8")
    for name in [*IDENTITY, *TELEMETRY, "PowerSetpointKw", "HeartbeatCounter", "SetPower", "ResetFault",
                 NAMESPACE_URI]:
        assert f"`{name}" in text, name

