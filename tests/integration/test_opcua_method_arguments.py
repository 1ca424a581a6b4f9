"""SetPower / ResetFault arguments checked at the OPC UA edge, through a real asyncua client.

Wrong argument counts, wrong types, non-finite powers and unusable command ids must come back as the
status codes OPC UA Part 4 (Call) names, with per-argument results, and leave no traceback in the log:
nothing reaches the command path or the device.
"""

from __future__ import annotations

import logging
import math

import pytest
from asyncua import Client, Node, ua
from asyncua.common.methods import to_variant

from tests.integration.test_opcua_server import GATEWAY, Gateway, connect, gateway, run, unit_node

__all__ = ["gateway"]  # the module-scoped gateway fixture of test_opcua_server, one instance for this module

pytestmark = pytest.mark.integration

BAD_ARGUMENTS = [
    pytest.param((120.0, 0.0), "BadArgumentsMissing", id="two-arguments"),
    pytest.param((), "BadArgumentsMissing", id="no-arguments"),
    pytest.param((120.0, 0.0, "id", "extra"), "BadTooManyArguments", id="four-arguments"),
    pytest.param((120.0, 0.0, 42), "BadTypeMismatch", id="integer-command-id"),
    pytest.param((120.0, 0.0, b"bytes"), "BadTypeMismatch", id="bytes-command-id"),
    pytest.param(("120", 0.0, "id-str"), "BadTypeMismatch", id="string-power"),
    pytest.param((True, 0.0, "id-bool"), "BadTypeMismatch", id="boolean-power"),
    pytest.param(([1.0, 2.0], 0.0, "id-array"), "BadTypeMismatch", id="array-power"),
    pytest.param((math.inf, 0.0, "id-inf"), "BadInvalidArgument", id="infinite-p"),
    pytest.param((0.0, math.nan, "id-nan"), "BadInvalidArgument", id="nan-q"),
    pytest.param((0.0, 1e308 * 10, "id-overflow"), "BadInvalidArgument", id="overflowing-q"),
    pytest.param((10.0, 0.0, "x" * 129), "BadInvalidArgument", id="long-command-id"),
    pytest.param((10.0, 0.0, "a\x00b"), "BadInvalidArgument", id="nul-in-command-id"),
    pytest.param((10.0, 0.0, "a\nb"), "BadInvalidArgument", id="newline-in-command-id"),
    pytest.param((10.0, 0.0, "a\x1b[2Jb"), "BadInvalidArgument", id="escape-in-command-id"),
    pytest.param((math.nan, 0.0, 7), "BadInvalidArgument", id="invalid-and-mismatched"),
]


async def call(client: Client, parent: Node, method: str, *arguments: object) -> ua.CallMethodResult:
    """One Call request, its result as sent (asyncua's ``call_method`` raises on a bad status)."""
    request = ua.CallMethodRequest(ObjectId=parent.nodeid, MethodId=(await parent.get_child(method)).nodeid,
                                   InputArguments=to_variant(*arguments))
    [result] = await client.uaclient.call([request])
    return result


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info is not None or "Traceback" in record.getMessage()]


@pytest.mark.parametrize(("arguments", "status"), BAD_ARGUMENTS)
def test_bad_set_power_arguments_get_their_status_code_and_no_traceback(
        gateway: Gateway, caplog: pytest.LogCaptureFixture, arguments: tuple, status: str) -> None:
    driver = gateway.driver("mem-1")
    before = driver.p_kw

    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-1")
            gw = await client.nodes.objects.get_child([f"{ns}:Campus", f"{ns}:Gateways", f"{ns}:{GATEWAY}"])
            for parent in (unit, gw):
                result = await call(client, parent, f"{ns}:SetPower", *arguments)
                assert result.StatusCode.name == status, (parent, result)
                assert not result.OutputArguments

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert driver.p_kw == before
    assert tracebacks(caplog) == []


def test_per_argument_results_name_the_bad_argument(gateway: Gateway) -> None:
    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-1")
            result = await call(client, unit, f"{ns}:SetPower", 10.0, math.inf, 42)
            assert [code.name for code in result.InputArgumentResults] == [
                "Good", "BadInvalidArgument", "BadTypeMismatch"]

    run(scenario())


def test_reset_fault_with_arguments_is_refused_without_traceback(gateway: Gateway,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with connect(gateway, "ada") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            with pytest.raises(ua.uaerrors.BadTooManyArguments):
                await (await unit_node(client, "mem-1")).call_method(f"{ns}:ResetFault", 1.0)

    with caplog.at_level(logging.INFO):
        run(scenario())
    assert tracebacks(caplog) == []


def test_command_ids_at_the_bound_and_null_strings_are_accepted(gateway: Gateway) -> None:
    driver = gateway.driver("mem-2")

    async def scenario() -> None:
        async with connect(gateway, "otto") as client:
            ns = await client.get_namespace_index("urn:bessgw:opcua")
            unit = await unit_node(client, "mem-2")
            longest = "é" * 128  # printable, not ASCII: allowed
            assert await unit.call_method(f"{ns}:SetPower", 11.0, 0.0, longest) == [11.0, 0.0]
            assert driver.p_kw == 11.0
            # a null String is a String: no id, executed every time
            null_id = ua.Variant(None, ua.VariantType.String)
            assert await unit.call_method(f"{ns}:SetPower", 12.0, 0.0, null_id) == [12.0, 0.0]
            assert driver.p_kw == 12.0

    run(scenario())
