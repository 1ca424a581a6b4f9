"""Connection slots of the OPC UA server cannot be held by clients that never authenticate.

The attack this guards against needs no credentials: open TCP connections to the endpoint and say
nothing (or send HEL and stop), re-opening each one as soon as the server closes it. The server must
still let an operator in: pre-session connections are bounded per source address and in total (the
least advanced, oldest one makes room for a newcomer), closed when they have not created a session
within ``handshake_timeout_s`` or activated it within ``activation_timeout_s``, and activated sessions
have ``max_sessions`` slots of their own.

The attacker is its own process (tests/integration/opcua_flood.py), the gateway runs on its own loop in
a thread (as in test_opcua_server.py); every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from bessgw.compat import timeout
from bessgw.config import OpcUaSettings
from tests.integration.opcua_flood import hello
from tests.integration.test_opcua_server import (
    PASSWORDS,
    Gateway,
    client_certificate,
    make_settings,
    run,
    unit_node,
)

pytestmark = pytest.mark.integration

LOGIN_DEADLINE_S = 45.0  # the operator keeps trying until then; locked out means it never gets in
SILENT = 16  # raw connections that never send a byte
HELLO_ONLY = 8  # connections that send HEL and then nothing
HANDSHAKE_TIMEOUT_S = 1.0
CLOSE_DEADLINE_S = 10.0  # well below the 30 s activation timeout: only the handshake timeout closes in time
FLOOD_S = 120.0  # the attacker process's own bound
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    tmp = tmp_path_factory.mktemp("opcua-connections")
    trusted, _ = client_certificate(tmp / "clients", "trusted")
    (tmp / "state" / "pki" / "trusted").mkdir(parents=True)
    (tmp / "state" / "pki" / "trusted" / "trusted.der").write_bytes(trusted.certificate.read_bytes())
    settings: OpcUaSettings = make_settings(
        tmp, security_policies=["Basic256Sha256_SignAndEncrypt", "None"], anonymous="read", max_sessions=4,
        handshake_timeout_s=HANDSHAKE_TIMEOUT_S, activation_timeout_s=30.0)
    gw = Gateway(tmp, settings, ("conn-1",))
    gw.start()
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def patient(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    """Timeouts far beyond any test's length: whatever is closed here was evicted."""
    tmp = tmp_path_factory.mktemp("opcua-patient")
    gw = Gateway(tmp, make_settings(tmp, max_pending_connections_per_address=3, handshake_timeout_s=60.0,
                                    activation_timeout_s=60.0), ("conn-2",))
    gw.start()
    yield gw
    gw.stop()


@contextmanager
def flooded(gw: Gateway, silent: int = SILENT, hello_only: int = HELLO_ONLY) -> Iterator[None]:
    """The attacker process (tests/integration/opcua_flood.py) holding its connections open."""
    proc = subprocess.Popen([sys.executable, "-m", "tests.integration.opcua_flood", gw.url, str(silent),
                             str(hello_only), str(FLOOD_S)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"  # the flood ends by itself after FLOOD_S
        yield
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
        print("flood:", out.strip())


async def operator_sets_power(gw: Gateway, command_id: str) -> list[float]:
    """Log in as the operator and call SetPower, retrying until :data:`LOGIN_DEADLINE_S`."""
    files, uri = client_certificate(gw.tmp / "clients", "trusted")
    deadline = time.monotonic() + LOGIN_DEADLINE_S
    last: BaseException | None = None
    while time.monotonic() < deadline:
        client = Client(gw.url, timeout=5)
        client.application_uri = uri
        client.set_user("otto")
        client.set_password(PASSWORDS["otto"])
        try:
            async with timeout(10):
                await client.set_security(SecurityPolicyBasic256Sha256, certificate=str(files.certificate),
                                          private_key=str(files.private_key),
                                          mode=ua.MessageSecurityMode.SignAndEncrypt)
                await client.connect()
        except (OSError, asyncio.TimeoutError, ua.UaError) as err:
            last = err
            try:
                await asyncio.wait_for(client.disconnect(), 5)
            except (OSError, asyncio.TimeoutError, ua.UaError, AttributeError):
                pass  # never connected
            await asyncio.sleep(0.2)  # pacing between login attempts
            continue
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "conn-1")
            return await unit.call_method(f"{ns}:SetPower", 12.0, 0.0, command_id)
        finally:
            await asyncio.wait_for(client.disconnect(), 10)
    raise AssertionError(f"operator locked out for {LOGIN_DEADLINE_S} s; last error: {last!r}")


def test_operator_logs_in_while_unauthenticated_connections_flood_the_endpoint(guarded: Gateway) -> None:
    driver = guarded.driver("conn-1")

    async def scenario() -> None:
        assert await operator_sets_power(guarded, "through-the-flood") == [12.0, 0.0]

    with flooded(guarded):
        run(scenario())
    assert driver.p_kw == 12.0


def test_connections_that_stall_before_a_session_are_closed_after_the_handshake_timeout(guarded: Gateway) -> None:
    host, port = guarded.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)

    async def closed_by_server(speak: bool) -> bool:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            if speak:
                writer.write(hello(guarded.url))
            async with timeout(CLOSE_DEADLINE_S):
                while await reader.read(4096):  # the ACK to our HEL, then nothing until the close
                    pass
            return True
        finally:
            writer.close()

    async def scenario() -> None:
        assert await asyncio.gather(closed_by_server(False), closed_by_server(True)) == [True, True]

    run(scenario())
    assert guarded.server is not None and guarded.server.connections.timed_out >= 2


def test_pending_connections_per_address_are_bounded_least_advanced_oldest_first(patient: Gateway) -> None:
    assert patient.server is not None
    guard = patient.server.connections
    host, port = patient.url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)

    async def scenario() -> None:
        evicted_before = guard.evicted
        old_reader, old = await asyncio.open_connection(host, int(port))  # the oldest, but silent
        talker_reader, talker = await asyncio.open_connection(host, int(port))
        talker.write(hello(patient.url))
        assert await talker_reader.read(4096)  # ACK: it spoke, so it outranks every silent one
        silent = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        try:
            # a fourth connection from this address (limit 3): the oldest silent one makes room...
            async with timeout(CLOSE_DEADLINE_S):
                assert await old_reader.read(1) == b""
            assert guard.evicted == evicted_before + 1
            # ...and with only silent ones younger than the talker left, they go before it
            newcomer = await asyncio.open_connection(host, int(port))
            silent.append(newcomer)
            async with timeout(CLOSE_DEADLINE_S):
                assert await silent[0][0].read(1) == b""
            assert guard.evicted == evicted_before + 2
            assert not talker_reader.at_eof() and not newcomer[0].at_eof()
        finally:
            for _, writer in silent:
                writer.close()
            talker.close()
            old.close()

    run(scenario())
