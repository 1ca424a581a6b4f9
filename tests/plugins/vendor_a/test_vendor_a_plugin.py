"""vendor_a as a plugin: what it registers, the conformance kit, and its simulator as a process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import bessgw_vendor_a.plugin as plugin_module
import pytest
from bessgw_vendor_a.driver import VendorAUnitOptions
from pymodbus.client import AsyncModbusTcpClient

from bessgw.testing import DeviceUnderTest, DriverConformance, installed_plugins, modbus_unit
from tests.plugins.vendor_a.harness import simulator

pytestmark = pytest.mark.integration  # the simulator on Modbus TCP and as a process

BESSGW = str(Path(sys.executable).with_name("bessgw"))
README = Path(plugin_module.__file__).resolve().parents[2] / "README.md"


def test_plugin_declares_its_api_and_registers_driver_and_simulator():
    assert plugin_module.BESSGW_PLUGIN_API == "1.0"
    registry = installed_plugins()
    driver = registry.drivers["vendor_a"]
    assert driver.transport == "modbus" and driver.unit_options is VendorAUnitOptions
    simulator = registry.simulators["vendor_a"]
    args = simulator.parse_args(["--port", "15020", "--count", "4", "--firmware", "v1"])
    assert (args.port, args.count, args.firmware, args.host) == (15020, 4, "v1", "127.0.0.1")
    with pytest.raises(ValueError, match="invalid choice"):
        simulator.parse_args(["--port", "1", "--firmware", "v9"])


def test_unit_options_reject_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        VendorAUnitOptions.model_validate({"verify_write": False})


class TestVendorAConformance(DriverConformance):
    driver_name = "vendor_a"

    @pytest.fixture(params=["v1", "v2"])
    def open_device(self, request):
        @contextlib.asynccontextmanager
        async def open_():
            async with simulator(1, firmware=request.param) as sim:
                container = sim.containers[0]
                async with modbus_unit("vendor_a", port=sim.ports[0]) as unit:
                    yield DeviceUnderTest(unit, stop=container.stop, start=container.start)

        return open_


async def _read_line(stream: asyncio.StreamReader, timeout_s: float) -> str:
    return (await asyncio.wait_for(stream.readline(), timeout_s)).decode().strip()


def test_bessgw_sim_serves_the_map_to_an_independent_client_and_stops_on_sigterm():
    async def scenario():
        process = await asyncio.create_subprocess_exec(
            BESSGW, "sim", "vendor_a", "--port", "0", "--count", "2", "--soc-pct", "61.5",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert await _read_line(process.stdout, 30.0) == "ready"
            ports = None
            for _ in range(20):  # the listening log line names the ports the OS picked
                line = await _read_line(process.stderr, 10.0)
                if "vendor_a_simulator_listening" in line:
                    ports = json.loads(line)["ports"]
                    break
            assert ports and len(ports) == 2
            for port in ports:
                client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0, reconnect_delay=0)
                assert await client.connect()
                response = await client.read_holding_registers(102, count=1, device_id=1)
                client.close()
                assert response.registers == [6150]  # v2: SOC in 0.01 %
            if shutil.which("mbpoll"):
                command = _readme_mbpoll_command().replace("15020", str(ports[1])).split()
                done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                               timeout=20)
                assert re.search(r"\[102\]:\s+6150", done.stdout), done.stdout + done.stderr
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 10.0) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    asyncio.run(scenario())


def _readme_mbpoll_command() -> str:
    """The SOC command documented in the README, so the doc is tested, not just written."""
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("mbpoll ") and "-r 102" in line:
            return line.strip()
    raise AssertionError("README documents no mbpoll command reading SOC (-r 102)")
