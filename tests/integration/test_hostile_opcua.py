"""The northbound OPC UA server as hostile or careless clients use it: per-call and per-subscription
limits, publishing intervals, ``Campus/SetPower`` called with arguments of every wrong kind, methods
called on an object that does not have them.

One in-process gateway (the demo's policy: None offered, anonymous read) with campus dispatch wired in but
no campus service, as ``config/demo.toml`` runs it; each test connects its own asyncua client on loopback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import pytest
import structlog
from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from bessgw.campus.commands import CampusCommands
from bessgw.northbound import operation_limits, service_faults
from bessgw.northbound.http.metrics import OpcUaCollector
from tests.integration import test_opcua_server as harness
from tests.integration.test_opcua_server import GATEWAY, PASSWORDS, Gateway, make_settings, run, unit_node

pytestmark = pytest.mark.integration

V, VT = ua.Variant, ua.VariantType


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, plugin_path: list[str]):
    tmp = tmp_path_factory.mktemp("opcua-hostile")
    settings = make_settings(tmp, security_policies=["Basic256Sha256_SignAndEncrypt", "None"], anonymous="read",
                             max_sessions=4)
    gw = Gateway(tmp, settings, ("h-1", "h-2"))
    with pytest.MonkeyPatch.context() as patch:
        campus = CampusCommands(lambda: None, lambda: gw.control, structlog.get_logger("test-campus"))
        patch.setattr(harness, "OpcUaServer", partial(harness.OpcUaServer, campus_commands=campus))
        gw.start()
    yield gw
    gw.stop()


@asynccontextmanager
async def session(gw: Gateway, user: str | None = None) -> AsyncIterator[Client]:
    """A session over the None policy (anonymous, or a user whose password travels encrypted)."""
    client = Client(gw.url, timeout=30)
    if user is not None:
        client.set_user(user)
        client.set_password(PASSWORDS[user])
    await asyncio.wait_for(client.connect(), 20)
    try:
        yield client
    finally:
        await asyncio.wait_for(client.disconnect(), 20)


class _Quiet:
    def datachange_notification(self, *args: object) -> None:
        pass


async def _subscription(client: Client) -> Subscription:
    params = ua.CreateSubscriptionParameters(RequestedPublishingInterval=1000, RequestedLifetimeCount=600,
                                             RequestedMaxKeepAliveCount=20, MaxNotificationsPerPublish=0,
                                             PublishingEnabled=False)
    return await client.create_subscription(params, _Quiet())


def _items(node: ua.NodeId, count: int, first_handle: int = 0) -> list[ua.MonitoredItemCreateRequest]:
    return [ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=node, AttributeId=ua.AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=ua.MonitoringParameters(ClientHandle=first_handle + i, SamplingInterval=0,
                                                    QueueSize=1000, DiscardOldest=True))
        for i in range(count)]


async def _variable(client: Client) -> ua.NodeId:
    ns = await client.get_namespace_index("urn:bessgw:opcua")
    return (await (await unit_node(client, "h-1")).get_child(f"{ns}:SocPct")).nodeid


async def _create(client: Client, subscription: Subscription, items: list[ua.MonitoredItemCreateRequest]
                  ) -> list[ua.MonitoredItemCreateResult]:
    params = ua.CreateMonitoredItemsParameters(SubscriptionId=subscription.subscription_id,
                                               TimestampsToReturn=ua.TimestampsToReturn.Both, ItemsToCreate=items)
    return await client.uaclient.create_monitored_items(params)


def test_the_advertised_operation_limits_are_the_enforced_ones(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with session(gateway) as client:
            limits = client.get_node(ua.ObjectIds.Server_ServerCapabilities_OperationLimits)
            per_call = await (await limits.get_child("0:MaxMonitoredItemsPerCall")).read_value()
            per_read = await (await limits.get_child("0:MaxNodesPerRead")).read_value()
            per_subscription = await client.get_node(
                ua.ObjectIds.Server_ServerCapabilities_MaxMonitoredItemsPerSubscription).read_value()
        assert per_call == operation_limits.MAX_NODES_PER_CALL
        assert per_read == operation_limits.MAX_NODES_PER_CALL
        assert per_subscription == operation_limits.MAX_MONITORED_ITEMS_PER_SUBSCRIPTION

    run(scenario())


def test_a_request_over_the_per_call_limit_is_refused_whole(gateway: Gateway) -> None:
    over = operation_limits.MAX_NODES_PER_CALL + 1

    async def scenario() -> None:
        async with session(gateway) as client:
            unit = await unit_node(client, "h-1")
            variable = await _variable(client)
            subscription = await _subscription(client)
            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await _create(client, subscription, _items(variable, over))
            read = ua.ReadParameters(NodesToRead=[ua.ReadValueId(NodeId=unit.nodeid, AttributeId=attribute)
                                                  for attribute in [ua.AttributeIds.BrowseName] * over])
            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await client.uaclient.read(read)
            browse = ua.BrowseParameters(NodesToBrowse=[ua.BrowseDescription(
                NodeId=unit.nodeid, BrowseDirection=ua.BrowseDirection.Forward, IncludeSubtypes=True,
                NodeClassMask=0, ResultMask=63)] * over)
            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await client.uaclient.browse(browse)
            # within the limit, the same session goes on working
            results = await _create(client, subscription, _items(variable, 3))
            assert all(result.StatusCode.is_good() for result in results)

    run(scenario())


def test_a_call_request_holds_at_most_the_advertised_number_of_method_calls(gateway: Gateway) -> None:
    """Each SetPower is a journaled command: one request may not queue ten thousand of them."""
    limit = operation_limits.MAX_METHOD_CALLS_PER_CALL

    async def scenario() -> None:
        async with session(gateway) as client:
            limits = client.get_node(ua.ObjectIds.Server_ServerCapabilities_OperationLimits)
            assert await (await limits.get_child("0:MaxNodesPerMethodCall")).read_value() == limit
            unit = await unit_node(client, "h-1")
            method = await unit.get_child(f"{unit.nodeid.NamespaceIndex}:SetPower")

            def calls(count: int) -> list[ua.CallMethodRequest]:
                return [ua.CallMethodRequest(ObjectId=unit.nodeid, MethodId=method.nodeid, InputArguments=[
                    ua.Variant(0.0, ua.VariantType.Double), ua.Variant(0.0, ua.VariantType.Double),
                    ua.Variant(f"c{index}", ua.VariantType.String)]) for index in range(count)]

            with pytest.raises(ua.uaerrors.BadTooManyOperations):
                await client.uaclient.call(calls(limit + 1))
            results = await client.uaclient.call(calls(2))  # within the limit: answered call by call
            assert len(results) == 2  # (an anonymous session may not command: refused per call, not whole)

    run(scenario())


def test_a_subscription_holds_at_most_the_advertised_number_of_monitored_items(gateway: Gateway) -> None:
    cap = operation_limits.MAX_MONITORED_ITEMS_PER_SUBSCRIPTION

    async def scenario() -> None:
        async with session(gateway) as client:
            variable = await _variable(client)
            subscription = await _subscription(client)
            first = await _create(client, subscription, _items(variable, cap - 2))
            assert all(result.StatusCode.is_good() for result in first)
            second = await _create(client, subscription, _items(variable, 5, first_handle=cap))
            codes = [result.StatusCode.name for result in second]
            assert codes == ["Good", "Good", *["BadTooManyMonitoredItems"] * 3]
            # deleting makes room again, and a fresh subscription has its own allowance
            deleted = await client.uaclient.delete_monitored_items(ua.DeleteMonitoredItemsParameters(
                SubscriptionId=subscription.subscription_id,
                MonitoredItemIds=[result.MonitoredItemId for result in first[:2]]))
            assert all(code.is_good() for code in deleted)
            third = await _create(client, subscription, _items(variable, 3, first_handle=2 * cap))
            assert [result.StatusCode.name for result in third] == ["Good", "Good", "BadTooManyMonitoredItems"]
            # the session's allowance spans its subscriptions
            other = await _subscription(client)
            left = operation_limits.MAX_MONITORED_ITEMS_PER_SESSION - cap
            fourth = await _create(client, other, _items(variable, left, first_handle=3 * cap))
            assert all(result.StatusCode.is_good() for result in fourth)
            [fifth] = await _create(client, other, _items(variable, 1, first_handle=4 * cap))
            assert fifth.StatusCode.name == "BadTooManyMonitoredItems"

    run(scenario())


def test_modifying_an_unknown_monitored_item_is_answered_per_item(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with session(gateway) as client:
            subscription = await _subscription(client)
            [created] = await _create(client, subscription, _items(await _variable(client), 1))
            modify = ua.ModifyMonitoredItemsParameters(
                SubscriptionId=subscription.subscription_id, TimestampsToReturn=ua.TimestampsToReturn.Both,
                ItemsToModify=[ua.MonitoredItemModifyRequest(
                    MonitoredItemId=item_id, RequestedParameters=ua.MonitoringParameters(
                        ClientHandle=7, SamplingInterval=100, QueueSize=5))
                    for item_id in (created.MonitoredItemId, 999_999)])
            known, unknown = await client.uaclient.modify_monitored_items(modify)
            assert known.StatusCode.is_good() and known.RevisedQueueSize == 5
            assert unknown.StatusCode.name == "BadMonitoredItemIdInvalid"

    run(scenario())


def test_absurd_publishing_intervals_are_revised_into_the_supported_range(gateway: Gateway) -> None:
    fastest_ms = min(gateway.settings.sampling_interval_s * 1000.0, operation_limits.FASTEST_PUBLISHING_INTERVAL_MS)
    cases = {0.0: fastest_ms, -5.0: fastest_ms, float("nan"): fastest_ms, 1e-6: fastest_ms, 1e12: 3_600_000.0,
             float("inf"): 3_600_000.0, 250.0: 250.0}

    async def scenario() -> None:
        async with session(gateway) as client:
            revised = {}
            for requested in cases:
                params = ua.CreateSubscriptionParameters(
                    RequestedPublishingInterval=requested, RequestedLifetimeCount=600, RequestedMaxKeepAliveCount=20,
                    MaxNotificationsPerPublish=0, PublishingEnabled=True)
                result = await client.uaclient.create_subscription(params, lambda *_: None)
                revised[requested] = result.RevisedPublishingInterval
                await client.uaclient.delete_subscriptions([result.SubscriptionId])
        assert revised == cases

    run(scenario())


@pytest.mark.parametrize(("arguments", "status"), [
    ([], "BadArgumentsMissing"),
    ([V(0.0, VT.Double)], "BadArgumentsMissing"),
    ([V(0.0, VT.Double), V(0.0, VT.Double), V("c-1", VT.String), V(1, VT.Int32)], "BadTooManyArguments"),
    ([V("0", VT.String), V(0.0, VT.Double), V("c-2", VT.String)], "BadTypeMismatch"),
    ([V(float("nan"), VT.Double), V(0.0, VT.Double), V("c-3", VT.String)], "BadInvalidArgument"),
    ([V(0.0, VT.Double), V(0.0, VT.Double), V("x" * 1_000_000, VT.String)], "BadInvalidArgument"),
    ([V(0.0, VT.Double), V(0.0, VT.Double), V("c-4", VT.String)], "BadNotSupported"),  # valid: no campus here
])
def test_campus_set_power_checks_its_arguments_like_every_set_power(gateway: Gateway, arguments: list[ua.Variant],
                                                                     status: str) -> None:
    async def scenario() -> None:
        async with session(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            request = ua.CallMethodRequest(ObjectId=ua.NodeId("Campus", ns), MethodId=ua.NodeId("Campus.SetPower", ns),
                                           InputArguments=arguments)
            [result] = await client.uaclient.call([request])
            assert result.StatusCode.name == status

    run(scenario())


def test_a_method_called_on_an_object_that_does_not_have_it_is_refused(gateway: Gateway) -> None:
    """OPC UA Part 4: the method must belong to ``ObjectId``; h-1's SetPower on h-2 must not move h-1."""
    arguments = [V(100.0, VT.Double), V(0.0, VT.Double), V("")]

    async def scenario() -> dict[str, str]:
        answers = {}
        async with session(gateway, "ada") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            one, two = await unit_node(client, "h-1"), await unit_node(client, "h-2")
            gw = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}"])
            set_power = (await one.get_child(f"{ns}:SetPower")).nodeid
            calls = {
                "unit SetPower on another unit": (two.nodeid, set_power, arguments),
                "unit SetPower on Server": (client.nodes.server.nodeid, set_power, arguments),
                "unit ResetFault on another unit": (two.nodeid, (await one.get_child(f"{ns}:ResetFault")).nodeid, []),
                "gateway SetPower on a unit": (one.nodeid, (await gw.get_child(f"{ns}:SetPower")).nodeid, arguments),
                "campus SetPower on the gateway": (gw.nodeid, ua.NodeId("Campus.SetPower", ns), arguments),
            }
            for name, (object_id, method_id, inputs) in calls.items():
                [result] = await client.uaclient.call([ua.CallMethodRequest(
                    ObjectId=object_id, MethodId=method_id, InputArguments=inputs)])
                answers[name] = result.StatusCode.name
        return answers

    answers = run(scenario())
    assert answers == dict.fromkeys(answers, "BadMethodInvalid")
    control = gateway.control
    assert control is not None

    async def journaled() -> list[float | None]:  # on the gateway's loop, which owns the journal
        return [entry.requested_p_kw for entry in control.journal.page(None, 500)]

    assert 100.0 not in gateway.call(journaled())


def test_service_faults_answered_to_clients_are_counted_not_logged_as_errors(
        gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    over = operation_limits.MAX_NODES_PER_CALL + 1

    async def scenario() -> None:
        async with session(gateway) as client:
            unit = await unit_node(client, "h-1")
            read = ua.ReadParameters(NodesToRead=[ua.ReadValueId(NodeId=unit.nodeid, AttributeId=13)] * over)
            for _ in range(3):
                with pytest.raises(ua.uaerrors.BadTooManyOperations):
                    await client.uaclient.read(read)
            # a request that does not decode (an enumeration value that does not exist)
            browse = ua.BrowseParameters(NodesToBrowse=[ua.BrowseDescription(
                NodeId=unit.nodeid, BrowseDirection=7, IncludeSubtypes=True, ResultMask=63)])
            with pytest.raises(ua.UaStatusCodeError):
                await client.uaclient.browse(browse)
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running

    def installed() -> list[service_faults.ServiceFaultFilter]:  # by the server, on start
        return [f for f in logging.getLogger(service_faults.LOGGER).filters
                if isinstance(f, service_faults.ServiceFaultFilter)]

    before = sum(f.totals["BadTooManyOperations"] for f in installed())
    with caplog.at_level(logging.WARNING, logger=service_faults.LOGGER):
        run(scenario())
    faults = [record for record in caplog.records if record.name == service_faults.LOGGER]
    assert all(record.levelno == logging.WARNING for record in faults), [r.getMessage() for r in faults]
    assert len(faults) <= 1
    assert len(installed()) == 1 and installed()[0].totals["BadTooManyOperations"] == before + 3
    assert installed()[0].totals["BadDecodingError"] >= 1
    # and Prometheus sees them
    [family] = [f for f in OpcUaCollector(lambda: gateway.server).collect() if f.name == "bessgw_opcua_service_faults"]
    assert dict((labels[0], value) for labels, value in family.rows)["BadTooManyOperations"] >= before + 3


def test_read_only_sessions_cannot_take_the_slots_reserved_for_operators(gateway: Gateway) -> None:
    """max_sessions = 4: anonymous (read-only) sessions get 3; the 4th slot waits for an operator."""
    assert gateway.settings.max_sessions == 4

    async def scenario() -> tuple[str, str, str]:
        held: list[Client] = []
        try:
            for _ in range(3):
                client = Client(gateway.url, timeout=30)
                await asyncio.wait_for(client.connect(), 20)
                held.append(client)
            try:
                async with session(gateway):
                    anonymous = "Good"
            except ua.uaerrors.BadTooManySessions:
                anonymous = "BadTooManySessions"
            async with session(gateway, "otto") as operator:
                await operator.nodes.server_state.read_value()
                viewer_status = "Good"
                try:
                    async with session(gateway, "vera"):
                        pass
                except ua.uaerrors.BadTooManySessions:
                    viewer_status = "BadTooManySessions"
            return anonymous, "Good", viewer_status
        finally:
            for client in held:
                await asyncio.wait_for(client.disconnect(), 20)

    assert run(scenario()) == ("BadTooManySessions", "Good", "BadTooManySessions")


def test_a_request_over_the_message_size_limit_is_not_taken_in(gateway: Gateway,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """asyncua takes messages up to 100 MB into memory by default; anonymous clients get 8 MB."""
    def write(size_bytes: int) -> ua.WriteParameters:
        return ua.WriteParameters(NodesToWrite=[ua.WriteValue(
            NodeId=ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime), AttributeId=ua.AttributeIds.Value,
            Value=ua.DataValue(ua.Variant(b"x" * size_bytes, ua.VariantType.ByteString)))])

    async def scenario() -> tuple[str, str]:
        async with session(gateway) as client:
            [small] = await client.uaclient.write(write(1 << 20))
        try:
            async with session(gateway) as client:
                [large] = await client.uaclient.write(write(operation_limits.MAX_MESSAGE_BYTES + (1 << 20)))
                large_answer = large.name
        except (ua.UaError, ConnectionError, asyncio.TimeoutError) as err:
            large_answer = type(err).__name__
        async with session(gateway) as client:  # the server serves on
            assert await client.nodes.server_state.read_value() == ua.ServerState.Running
        return small.name, large_answer

    with caplog.at_level(logging.WARNING, logger=service_faults.CHANNEL_LOGGER):
        small, large = run(scenario())
    assert small == "BadUserAccessDenied"  # taken in, decoded, refused: anonymous may not write
    assert large != "BadUserAccessDenied", large  # never taken in
    assert not [r.getMessage() for r in caplog.records
                if r.name == service_faults.CHANNEL_LOGGER and r.levelno >= logging.ERROR]
