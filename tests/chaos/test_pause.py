"""A paused gateway (SIGSTOP for 3 × the source timeout) must not act on what it decided before the pause.

The container is a vendor_a simulator in its own process, so its watchdog keeps running while the gateway
is frozen: it drops the stale command and stops. After SIGCONT the gateway must not write anything non-zero
to it: the source went silent long ago, so the fail-safe target is 0, and any write still in flight from
before the pause is past its decision's deadline.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient

from tests.integration.daemon_harness import GatewayProcess, bessgw_command
from tests.ports import free_tcp_port

pytestmark = [pytest.mark.chaos, pytest.mark.daemon]

SOURCE_TIMEOUT_S = 2.0
P_SETPOINT, P_MEASURED = 200, 104  # vendor_a v2 map: i32 little-endian words, 0.1 kW

CONFIG = """
[gateway]
id = "gw-pause"
state_dir = "{state}"
log_format = "json"
shutdown_grace_s = 4

[defaults]
poll_interval_s = 0.1
heartbeat_interval_s = 0.2

[control]
period_s = 0.1
hold_s = 0
[[control.sources]]
name = "local"
priority = 300
heartbeat_timeout_s = {timeout}

[[units]]
id = "A1"
driver = "vendor_a"
[units.modbus]
host = "127.0.0.1"
port = {port}
unit_id = 1
"""


def _kw(words: list[int]) -> float:
    raw = (words[1] << 16) | words[0]
    return (raw - (1 << 32) if raw & 0x80000000 else raw) * 0.1


async def _read_kw(client: AsyncModbusTcpClient, address: int) -> float:
    reply = await client.read_holding_registers(address, count=2, device_id=1)
    assert not reply.isError(), reply
    return _kw(list(reply.registers))


async def _until(client: AsyncModbusTcpClient, address: int, predicate, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await _read_kw(client, address)
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"register {address} stayed at {value} for {timeout_s} s")
        await asyncio.sleep(0.05)


def test_a_gateway_woken_from_a_pause_writes_nothing_it_decided_before(tmp_path: Path, subprocess_env) -> None:
    port = free_tcp_port()
    sim = subprocess.Popen([*bessgw_command(), "sim", "vendor_a", "--port", str(port), "--count", "1",
                            "--firmware", "v2", "--watchdog-s", "1.0", "--soc-pct", "60"],
                           env=subprocess_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    gw = None
    try:
        assert sim.stdout is not None and sim.stdout.readline().strip() == "ready"
        config = tmp_path / "gw.toml"
        config.write_text(CONFIG.format(state=tmp_path / "state", port=port, timeout=SOURCE_TIMEOUT_S))
        gw = GatewayProcess(config, subprocess_env, tmp_path)
        gw.wait_notify("READY", timeout_s=30)
        gw.wait_log(lambda e: e.get("event") == "control_ready")

        async def scenario() -> list[float]:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            await client.connect()
            try:
                done = subprocess.run([*bessgw_command(), "setpoint", "--config", str(config), "--p-kw", "150",
                                       "--id", "before-pause"], env=subprocess_env, capture_output=True,
                                      text=True, timeout=30)
                assert done.returncode == 0, done.stderr
                await _until(client, P_MEASURED, lambda p: p > 100.0, timeout_s=15)
                gw.signal(signal.SIGSTOP)
                try:
                    # the container's own watchdog stops it while the gateway is frozen
                    await _until(client, P_MEASURED, lambda p: p == 0.0, timeout_s=10)
                    await _until(client, P_SETPOINT, lambda p: p == 0.0, timeout_s=10)
                    await asyncio.sleep(3 * SOURCE_TIMEOUT_S)  # the pause itself (the fault), not a sync
                finally:
                    gw.signal(signal.SIGCONT)
                seen = []
                woke = time.monotonic()
                while time.monotonic() - woke < 3.0:  # what the device is told after the wake-up
                    seen.append(await _read_kw(client, P_SETPOINT))
                    await asyncio.sleep(0.05)
                return seen
            finally:
                client.close()

        seen = asyncio.run(scenario())
        assert seen and all(p == 0.0 for p in seen), f"the woken gateway wrote an old setpoint: {sorted(set(seen))}"
        status = subprocess.run([*bessgw_command(), "journal", "tail", "--config", str(config), "--json"],
                                env=subprocess_env, capture_output=True, text=True, timeout=30)
        assert "before-pause#dropped" in status.stdout  # the fail-safe's drop is journaled: no restart revives it
    finally:
        if gw is not None:
            gw.stop()
        sim.terminate()
        sim.wait(10)
