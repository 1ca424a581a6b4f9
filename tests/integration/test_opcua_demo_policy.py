"""The demo configuration of the OPC UA server: None policy offered and anonymous read-only access.

Only when the config asks for it: any client can browse at once, but writes and SetPower still need an
operator login, even over the unencrypted endpoint (the password then travels encrypted with the server
certificate, as the endpoint's user token policy says).
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Client, ua
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
from cryptography import x509

from bessgw.config import OpcUaSettings
from tests.integration.test_opcua_server import (
    GATEWAY,
    PASSWORDS,
    Gateway,
    client_certificate,
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


# --------------------------------------------------------------- standard clients (issue 15)


async def anonymous_with_certificate(gw: Gateway, name: str) -> Client:
    """An anonymous client on the None endpoint that sends its application certificate anyway, as
    node-opcua and UaExpert do (asyncua sends ``user_certificate`` in CreateSession; with no key it
    still activates anonymously)."""
    files, uri = client_certificate(gw.tmp / "clients", name)
    client = Client(gw.url, timeout=8)
    client.application_uri = uri
    client.user_certificate = x509.load_der_x509_certificate(files.certificate.read_bytes())
    return client


def test_client_certificate_is_ignored_on_none_and_checked_on_secure_channels(demo: Gateway) -> None:
    rejected_dir = demo.tmp / "state" / "pki" / "rejected"

    async def scenario() -> None:
        client = await anonymous_with_certificate(demo, "none-browser")
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            campus = await client.nodes.objects.get_child(f"{ns}:Campus")
            assert "Gateways" in {(await c.read_browse_name()).Name for c in await campus.get_children()}
            assert await (await (await unit_node(client, "demo-1")).get_child(f"{ns}:Chemistry")).read_value() == "lfp"
        finally:
            await asyncio.wait_for(client.disconnect(), 10)
        assert not list(rejected_dir.glob("test none-browser *.der"))  # not validated, not filed

        # the same, untrusted certificate on SignAndEncrypt: the trust list applies as always
        files, uri = client_certificate(demo.tmp / "clients", "none-browser")
        secure = Client(demo.url, timeout=8)
        secure.application_uri = uri
        await secure.set_security(SecurityPolicyBasic256Sha256, certificate=str(files.certificate),
                                  private_key=str(files.private_key), mode=ua.MessageSecurityMode.SignAndEncrypt)
        secure.set_user("otto")
        secure.set_password(PASSWORDS["otto"])
        with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
            await asyncio.wait_for(secure.connect(), 20)
        await asyncio.wait_for(secure.disconnect(), 10)
        assert len(list(rejected_dir.glob("test none-browser *.der"))) == 1

    run(scenario())


def test_user_access_level_shows_the_write_bit_only_to_roles_that_may_write(demo: Gateway) -> None:
    write_bit = 1 << ua.AccessLevel.CurrentWrite

    async def levels(user: str | None) -> tuple[int, int]:
        client = Client(demo.url, timeout=8)
        if user is not None:
            client.set_user(user)
            client.set_password(PASSWORDS[user])
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            setpoint = await (await unit_node(client, "demo-1")).get_child(f"{ns}:PowerSetpointKw")
            access = await setpoint.read_attribute(ua.AttributeIds.AccessLevel)
            user_access = await setpoint.read_attribute(ua.AttributeIds.UserAccessLevel)
            return access.Value.Value, user_access.Value.Value
        finally:
            await asyncio.wait_for(client.disconnect(), 10)

    async def scenario() -> None:
        for user in (None, "vera"):  # anonymous and viewer
            access, user_access = await levels(user)
            assert access & write_bit and not user_access & write_bit, (user, access, user_access)
            assert user_access & (1 << ua.AccessLevel.CurrentRead)
        for user in ("otto", "ada"):
            access, user_access = await levels(user)
            assert user_access & write_bit, (user, user_access)

    run(scenario())


def test_write_refusals_are_per_item_so_a_batch_does_the_allowed_part(demo: Gateway) -> None:
    driver = demo.driver("demo-1")

    async def batch(user: str | None, p_kw: float) -> list[str]:
        client = Client(demo.url, timeout=8)
        if user is not None:
            client.set_user(user)
            client.set_password(PASSWORDS[user])
        await asyncio.wait_for(client.connect(), 20)
        try:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "demo-1")
            names = ("PowerSetpointKw", "SocPct", "ReactivePowerSetpointKvar")
            nodes = [(await unit.get_child(f"{ns}:{name}")).nodeid for name in names]
            values = [ua.DataValue(ua.Variant(v, ua.VariantType.Double)) for v in (p_kw, 1.0, 0.0)]
            return [code.name for code in await client.uaclient.write_attributes(nodes, values)]
        finally:
            await asyncio.wait_for(client.disconnect(), 10)

    async def scenario() -> None:
        before = driver.p_kw
        # anonymous: every item refused, as a result per item (no ServiceFault for the request)
        assert await batch(None, -17.0) == ["BadUserAccessDenied"] * 3
        assert await batch("vera", -17.0) == ["BadUserAccessDenied"] * 3
        assert driver.p_kw == before
        # operator: the setpoints are written, the measured value is refused, in one request
        assert await batch("otto", -17.0) == ["Good", "BadUserAccessDenied", "Good"]
        assert driver.p_kw == -17.0

    run(scenario())
