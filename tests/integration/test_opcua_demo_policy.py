"""The demo configuration of the OPC UA server: None policy offered and anonymous read-only access.

Only when the config asks for it: any client can browse at once, but writes and SetPower still need an
operator login, even over the unencrypted endpoint (the password then travels encrypted with the server
certificate, as the endpoint's user token policy says).
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Client, ua

from bessgw.config import OpcUaSettings
from tests.integration.test_opcua_server import (
    GATEWAY,
    PASSWORDS,
    Gateway,
    make_settings,
    run,
    unit_node,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    tmp = tmp_path_factory.mktemp("opcua-demo")
    settings: OpcUaSettings = make_settings(
        tmp, security_policies=["Basic256Sha256_SignAndEncrypt", "Basic256Sha256_Sign", "None"], anonymous="read",
        max_sessions=2)
    gw = Gateway(tmp, settings, ("demo-1",))
    gw.start()
    yield gw
    gw.stop()


def test_none_policy_and_anonymous_are_offered_when_configured(demo: Gateway) -> None:
    async def scenario() -> None:
        endpoints = await asyncio.wait_for(Client(demo.url, timeout=8).connect_and_get_server_endpoints(), 15)
        modes = {e.SecurityMode for e in endpoints}
        assert ua.MessageSecurityMode.None_ in modes and ua.MessageSecurityMode.SignAndEncrypt in modes
        none = next(e for e in endpoints if e.SecurityMode == ua.MessageSecurityMode.None_)
        tokens = {t.TokenType: t for t in none.UserIdentityTokens}
        assert set(tokens) == {ua.UserTokenType.Anonymous, ua.UserTokenType.UserName}
        # a password sent over the None endpoint is encrypted with the server certificate
        assert tokens[ua.UserTokenType.UserName].SecurityPolicyUri.endswith("#Basic256Sha256")

    run(scenario())


def test_anonymous_reads_over_none_but_cannot_command(demo: Gateway) -> None:
    driver = demo.driver("demo-1")

    async def scenario() -> None:
        client = Client(demo.url, timeout=8)
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "demo-1")
            assert await (await unit.get_child(f"{ns}:Chemistry")).read_value() == "lfp"
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await unit.call_method(f"{ns}:SetPower", 10.0, 0.0, "anon-1")
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await (await unit.get_child(f"{ns}:PowerSetpointKw")).write_value(
                    ua.DataValue(ua.Variant(10.0, ua.VariantType.Double)))
            gw = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}"])
            with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                await gw.call_method(f"{ns}:SetPower", 10.0, 0.0, "anon-2")
        finally:
            await asyncio.wait_for(client.disconnect(), 10)
        assert driver.p_kw == 0.0

    run(scenario())


def test_operator_commands_over_the_none_endpoint_with_a_login(demo: Gateway) -> None:
    driver = demo.driver("demo-1")

    async def scenario() -> None:
        client = Client(demo.url, timeout=8)
        client.set_user("otto")
        client.set_password(PASSWORDS["otto"])
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "demo-1")
            assert await unit.call_method(f"{ns}:SetPower", -25.0, 0.0, "demo-cmd-1") == [-25.0, 0.0]
        finally:
            await asyncio.wait_for(client.disconnect(), 10)
        assert driver.p_kw == -25.0

    run(scenario())


def test_sessions_beyond_the_limit_are_refused(demo: Gateway) -> None:
    async def scenario() -> None:
        clients = [Client(demo.url, timeout=3) for _ in range(4)]
        try:
            for client in clients[:2]:
                await asyncio.wait_for(client.connect(), 20)
            # the third one may connect (connections still logging in have slots of their own) but its
            # session is refused with a status code that says why
            with pytest.raises(ua.uaerrors.BadTooManySessions):
                await asyncio.wait_for(clients[2].connect(), 20)
            # the first two are unaffected
            ns = await clients[0].get_namespace_index("urn:bessgw:opcua")
            assert await (await unit_node(clients[1], "demo-1")).get_child(f"{ns}:SocPct")
            # and a place freed is a place taken
            await asyncio.wait_for(clients[0].disconnect(), 10)
            await asyncio.wait_for(clients[3].connect(), 20)
            assert await (await unit_node(clients[3], "demo-1")).get_child(f"{ns}:SocPct")
        finally:
            for client in clients:
                try:
                    await asyncio.wait_for(client.disconnect(), 10)
                except (ConnectionError, asyncio.TimeoutError, OSError, ua.UaError):
                    pass  # the refused one was never connected

    run(scenario())


def test_server_stops_when_cancelled_and_runs_again_on_the_same_port(demo: Gateway) -> None:
    """What the daemon does on reload or after a failure: cancel the task, run the service again."""

    async def restart() -> None:
        assert demo.server is not None
        demo.server_task.cancel()
        await asyncio.wait({demo.server_task}, timeout=8)
        assert demo.server_task.cancelled()
        demo.server_task = asyncio.get_running_loop().create_task(demo.server.run())
        await asyncio.wait_for(demo.server.started.wait(), 30)

    demo.call(restart(), timeout_s=45)

    async def scenario() -> None:
        client = Client(demo.url, timeout=8)
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "demo-1")
            assert await (await unit.get_child(f"{ns}:Chemistry")).read_value() == "lfp"
        finally:
            await asyncio.wait_for(client.disconnect(), 10)

    run(scenario())
