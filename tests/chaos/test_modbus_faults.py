"""Faults on Modbus containers, with the daemon's runtime in-process (transport + driver + UnitSupervisor).

Killed and restarted containers, a container answering after 5 s, exception responses, out-of-range and
frozen values, dropped connections and garbage on the wire: each gives the right quality with a reason,
never delays the other units, and never stops a unit task.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time

import pytest

from bessgw.config import parse_config
from bessgw.errors import DeviceError
from bessgw.model import Quality
from bessgw.plugin import RegisterSpan
from bessgw.southbound.modbus.transport import ModbusTransport
from bessgw.testing import RecordingLog, wait_until
from tests.plugins.vendor_a.harness import Gateway, gateway_config, simulator

pytestmark = pytest.mark.chaos

FAST = {"request_timeout_s": 0.5, "connect_timeout_s": 0.5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.4}
TIMING = {"poll_interval_s": 0.1, "stale_after_s": 0.5, "bad_after_s": 2.0, "heartbeat_interval_s": 0.2}


def run(coro, timeout_s: float = 40.0):
    async def bounded():
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def good(t):
    return t.quality is Quality.GOOD


def test_killed_container_is_stale_meanwhile_and_reconnected_within_the_backoff_bound():
    async def scenario():
        async with (
            simulator(2, watchdog_s=5.0) as sim,
            Gateway(gateway_config(sim.ports, modbus=FAST, defaults=TIMING)) as gw,
        ):
            for uid in ("u0", "u1"):
                await gw.wait_for(uid, good, 10.0)
            await sim.containers[0].stop()
            killed = time.monotonic()
            down = await gw.wait_for("u0", lambda t: not good(t), 3.0)
            assert down.quality is Quality.STALE, down
            # while it is away, u0 is never shown as good, and u1 keeps polling
            outage_s = 1.0
            await asyncio.sleep(outage_s)  # the outage itself, not a synchronisation
            assert not any(good(t) for at, t in gw.arrivals.since("u0", killed + 0.01) if at > killed + 0.6)
            assert len(gw.arrivals.since("u1", killed)) >= 5
            await sim.containers[0].start()  # same port
            restarted = time.monotonic()
            await gw.wait_for("u0", good, 10.0)
            elapsed = time.monotonic() - restarted
            # transport backoff + supervisor backoff (each capped) + one connect and poll
            bound = 2 * FAST["reconnect_max_s"] + FAST["connect_timeout_s"] + TIMING["poll_interval_s"] + 0.5
            assert elapsed <= bound, f"reconnected after {elapsed:.2f} s, bound {bound:.2f} s"
            assert gw.endpoint("u0").stats.connects >= 2
            assert gw.log.named("modbus_endpoint_down") and gw.log.named("unit_recovered")
            assert gw.alive()

    run(scenario())


def test_a_container_answering_after_5_s_does_not_delay_the_others():
    async def scenario():
        async with simulator(3, watchdog_s=10.0) as sim:
            modbus = {**FAST, "request_timeout_s": 1.0, "breaker_failures": 2, "breaker_open_s": 1.0}
            async with Gateway(gateway_config(sim.ports, modbus=modbus, defaults=TIMING)) as gw:
                for uid in ("u0", "u1", "u2"):
                    await gw.wait_for(uid, good, 10.0)
                sim.containers[1].faults.delay_s = 5.0
                start = time.monotonic()
                window_s = 3.0
                await asyncio.sleep(window_s)  # observe the others' polls over a fixed window
                for uid in ("u0", "u2"):
                    stamps = [at for at, t in gw.arrivals.since(uid, start) if good(t)]
                    assert len(stamps) >= 0.7 * window_s / TIMING["poll_interval_s"], (uid, len(stamps))
                    gaps = [b - a for a, b in itertools.pairwise(stamps)]
                    assert max(gaps) < 0.5, f"{uid} waited {max(gaps):.2f} s between polls"
                slow = gw.supervisors["u1"].telemetry
                assert slow.quality is not Quality.GOOD
                endpoint = gw.endpoint("u1")
                assert endpoint.stats.timeouts >= 2 and endpoint.breaker.trips >= 1
                assert gw.log.named("unit_down")
                sim.containers[1].faults.delay_s = 0.0
                await gw.wait_for("u1", good, 10.0)
                assert gw.alive()

    run(scenario())


def test_exception_responses_give_bad_quality_with_the_code_logged():
    async def scenario():
        async with simulator(2) as sim, Gateway(gateway_config(sim.ports, modbus=FAST, defaults=TIMING)) as gw:
            for uid in ("u0", "u1"):
                await gw.wait_for(uid, good, 10.0)
            sim.containers[0].faults.exception_code = 4
            bad = await gw.wait_for("u0", lambda t: t.quality is Quality.BAD, 3.0)
            assert "exception code 4 (server device failure)" in bad.quality_reason
            logged = [e for e in gw.log.named("vendor_a_bad_data") if e["unit"] == "u0"]
            assert len(logged) == 1 and "exception code 4" in logged[0]["reason"]
            # the link itself is fine: polling goes on at its rate, u1 is untouched
            polls = gw.supervisors["u0"].polls
            await gw.wait_for("u0", lambda t: gw.supervisors["u0"].polls >= polls + 5, 3.0)
            assert len([e for e in gw.log.named("vendor_a_bad_data") if e["unit"] == "u0"]) == 1
            assert good(gw.supervisors["u1"].telemetry)
            sim.containers[0].faults.exception_code = 0
            await gw.wait_for("u0", good, 3.0)
            assert gw.alive()

    run(scenario())


def test_out_of_range_values_give_bad_quality_with_the_value_named():
    async def scenario():
        async with (
            simulator(1, firmware="v1") as sim,
            Gateway(gateway_config(sim.ports, modbus=FAST, defaults=TIMING)) as gw,
        ):
            await gw.wait_for("u0", good, 10.0)
            sim.fleet.out_of_range[0] = True
            bad = await gw.wait_for("u0", lambda t: t.quality is Quality.BAD, 3.0)
            assert "soc_pct = 6553.5 % outside 0..100" in bad.quality_reason
            assert gw.log.named("vendor_a_bad_data")[0]["reason"] == bad.quality_reason
            sim.fleet.out_of_range[0] = False
            await gw.wait_for("u0", good, 3.0)
            assert gw.log.named("vendor_a_data_good_again")
            assert gw.alive()

    run(scenario())


def test_frozen_values_turn_stale_then_bad():
    """The controller's sequence counter stops: the data's timestamp stops with it, and ages out."""

    async def scenario():
        async with simulator(1) as sim, Gateway(gateway_config(sim.ports, modbus=FAST, defaults=TIMING)) as gw:
            await gw.wait_for("u0", good, 10.0)
            sim.fleet.frozen[0] = True
            stale = await gw.wait_for("u0", lambda t: not good(t), 3.0)
            assert stale.quality is Quality.STALE
            bad = await gw.wait_for("u0", lambda t: t.quality is Quality.BAD, 5.0)
            assert "no data for" in bad.quality_reason
            assert gw.supervisors["u0"].connected  # the link is up; the data is what is old
            sim.fleet.frozen[0] = False
            await gw.wait_for("u0", good, 3.0)

    run(scenario())


def test_dropped_connections_and_fault_register_writes_are_survived():
    """Drop via the simulator's fault block (any Modbus client can do it): the unit reconnects."""

    async def scenario():
        async with simulator(1) as sim, Gateway(gateway_config(sim.ports, modbus=FAST, defaults=TIMING)) as gw:
            await gw.wait_for("u0", good, 10.0)
            link = gw.transport.link_for(gw.config.units[0])
            for _ in range(3):
                connects = gw.endpoint("u0").stats.connects
                await link.write_registers(244, [1], verify=False)  # FAULT_DROP

                def reconnected(t, before=connects):
                    return gw.endpoint("u0").stats.connects > before and good(t)

                await gw.wait_for("u0", reconnected, 5.0)
            assert gw.alive()

    run(scenario())


def test_garbage_on_the_wire_is_a_device_error_not_a_crash():
    """A "device" answering junk bytes: every request ends in a DeviceError; nothing escapes or hangs."""

    async def scenario():
        received = 0

        async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            try:
                for _ in range(50):
                    data = await reader.read(256)
                    if not data:
                        break
                    received += 1
                    # a plausible MBAP header promising 200 bytes, then nonsense
                    writer.write(data[:2] + b"\x00\x00\x00\xc8\x01\x03\xff" + b"\xde\xad" * 5)
                    await writer.drain()
            finally:
                writer.close()

        server = await asyncio.start_server(junk, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = parse_config(gateway_config([port], modbus={**FAST, "request_timeout_s": 0.3}))
        transport = ModbusTransport(config, RecordingLog())
        link = transport.link_for(config.units[0])
        errors = []
        for _ in range(4):
            try:
                await link.read_blocks([RegisterSpan(100, 22)])
            except DeviceError as err:
                errors.append(err)
        assert len(errors) == 4 and received >= 1
        await transport.close()
        server.close()
        await server.wait_closed()

    run(scenario())


def test_a_cancelled_request_ends_at_once_and_its_late_answer_is_not_taken_for_the_next():
    """A unit task cancelled while its request waits (shutdown, reload) must end at once, and the answer
    that arrives afterwards must be dropped by its transaction id, not handed to the next request."""

    async def scenario():
        requests: list[bytes] = []
        release = asyncio.Event()

        async def slow_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    head = await reader.readexactly(7)
                    body = await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                    requests.append(head + body)
                    if len(requests) == 1:
                        await release.wait()  # hold the first answer until its request was cancelled
                    count = int.from_bytes(body[3:5], "big")
                    value = len(requests)  # every answer says which request it answers
                    pdu = bytes([3, 2 * count]) + value.to_bytes(2, "big") * count
                    writer.write(head[0:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
                    await writer.drain()

        server = await asyncio.start_server(slow_first, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = parse_config(gateway_config([port], modbus={**FAST, "request_timeout_s": 5.0}))
        transport = ModbusTransport(config, RecordingLog())
        endpoint = transport.link_for(config.units[0]).endpoint
        try:
            task = asyncio.get_running_loop().create_task(endpoint.read_holding_registers(1, 100, 2))
            await wait_until(lambda: len(requests) == 1, 2.0)
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=1.0)
            assert task in done and task.cancelled()
            release.set()  # the first answer now arrives, after its request gave up
            assert await endpoint.read_holding_registers(1, 100, 2) == [2, 2]
            assert endpoint.stats.late_answers == 1 and endpoint.stats.connects == 1
        finally:
            await transport.close()
            server.close()

    run(scenario())


@pytest.mark.parametrize("pdu", [bytes([0x63, 0x02, 0x00, 0x01]), bytes([0x03, 0x02]), bytes([0x03, 0x04, 0x00])],
                         ids=["unknown-function", "short-read", "truncated-data"])
def test_an_undecodable_response_fails_the_request_without_a_traceback(caplog, pdu: bytes) -> None:
    """pymodbus raised inside data_received: asyncio logged a traceback and the request hung to its timeout."""
    from bessgw.config import ModbusSettings
    from bessgw.errors import DeviceUnavailableError
    from bessgw.southbound.modbus.endpoint import ModbusEndpoint

    async def answer_garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readexactly(7)
                await reader.readexactly(int.from_bytes(head[4:6], "big") - 1)
                writer.write(head[0:4] + (len(pdu) + 1).to_bytes(2, "big") + head[6:7] + pdu)
                await writer.drain()

    async def scenario():
        server = await asyncio.start_server(answer_garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        settings = ModbusSettings(request_timeout_s=30.0)  # a hang would show as the test's own timeout
        endpoint = ModbusEndpoint("127.0.0.1", port, settings, RecordingLog())
        try:
            with pytest.raises(DeviceUnavailableError, match="undecodable response"):
                await endpoint.read_holding_registers(1, 0, 1)
            assert endpoint.stats.undecodable == 1
        finally:
            await endpoint.close()
            server.close()

    with caplog.at_level(logging.DEBUG):
        run(scenario(), timeout_s=10.0)
    assert not [r for r in caplog.records if r.exc_info or "data_received() call failed" in r.getMessage()]
