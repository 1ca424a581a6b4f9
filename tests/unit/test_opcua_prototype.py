"""Stamped instances: exactly what asyncua's add_nodes creates, and a change to one never shows on another.

Two asyncua servers (initialised, never started: no sockets) get the same gateway and units; in one every
unit is created by asyncua (the prototype is dropped before each unit), in the other the first unit is
created by asyncua and the others are stamped from it. Every attribute and reference is compared.
"""

from __future__ import annotations

import asyncio

import pytest
from asyncua import Server, ua

from bessgw.northbound import information_model as model
from bessgw.northbound.compaction import Compactor, NodeIdAttribute, SharedAttribute, SlimAttribute

UNITS = ("u1", "u2", "u3")


async def build(stamped: bool) -> tuple[Server, model.Instance, list[model.Instance]]:
    server, _, gateway, units = await build_with_types(stamped)
    return server, gateway, units


async def build_with_types(stamped: bool) -> tuple[Server, model.Types, model.Instance, list[model.Instance]]:
    server = Server()
    await server.init()
    types = await model.create_types(server)
    gateway = await model.create_gateway(server, types, "gw")
    units = []
    for unit_id in UNITS:
        if not stamped:
            types.prototypes.pop(types.battery_unit, None)
        units.append(await model.create_unit(server, types, gateway, "gw", unit_id, lambda method, unit: None))
    return server, types, gateway, units


def snapshot(server: Server, nodeid: ua.NodeId) -> tuple[dict[ua.AttributeIds, object], list[object]]:
    aspace = server.iserver.aspace
    values = {}
    for attribute_id in aspace[nodeid].attributes:
        value = aspace.read_attribute_value(nodeid, attribute_id)
        # creation times differ between two servers; that each has one is compared
        values[attribute_id] = (value.Value, value.StatusCode, value.SourceTimestamp is None,
                                value.ServerTimestamp is None)
    return values, list(aspace[nodeid].references)


def test_stamped_units_have_the_same_attributes_and_references_as_asyncua_made_ones() -> None:
    async def scenario() -> None:
        plain, _, plain_units = await build(stamped=False)
        stamped, gateway, units = await build(stamped=True)
        assert isinstance(stamped.iserver.aspace[units[2].child("SocPct")].attributes[ua.AttributeIds.DataType],
                          SharedAttribute)  # really stamped
        compared = 0
        for plain_unit, unit in zip(plain_units, units, strict=True):
            plain_ids = model.instance_nodeids(plain, plain_unit)
            assert plain_ids == model.instance_nodeids(stamped, unit)
            assert len(plain_ids) > 50
            for nodeid in plain_ids:
                assert snapshot(stamped, nodeid) == snapshot(plain, nodeid), nodeid
                compared += 1
            assert plain_unit.values == unit.values
        folder = gateway.child("Units")
        assert snapshot(stamped, folder) == snapshot(plain, folder)  # the parent's references to each unit
        assert compared == 3 * len(model.instance_nodeids(plain, plain_units[0]))

    asyncio.run(scenario())


def test_a_change_to_a_shared_attribute_stays_on_its_own_node_and_reaches_its_subscribers() -> None:
    async def scenario() -> None:
        server, _, (_, second, third) = await build(stamped=True)
        aspace = server.iserver.aspace
        mine, other = second.child("SocPct"), third.child("SocPct")
        name = ua.AttributeIds.DisplayName
        shared = aspace[mine].attributes[name]
        assert shared is aspace[other].attributes[name] and isinstance(shared, SharedAttribute)
        with pytest.raises(AttributeError):
            shared.value = ua.DataValue(ua.Variant(ua.LocalizedText("x")))  # type: ignore[misc]
        heard: list[tuple[str, ua.DataValue]] = []

        def listener(who: str):
            async def callback(handle: int, value: ua.DataValue) -> None:
                heard.append((who, value))
            return callback

        status, _ = aspace.add_datachange_callback(mine, name, listener("mine"))
        assert status.is_good()
        assert isinstance(aspace[mine].attributes[name], SlimAttribute)  # its own now
        assert aspace[other].attributes[name] is shared
        renamed = ua.DataValue(ua.Variant(ua.LocalizedText("Charge")))
        await server.write_attribute_value(mine, renamed, name)
        assert heard == [("mine", renamed)]
        await server.write_attribute_value(other, ua.DataValue(ua.Variant(ua.LocalizedText("Other"))), name)
        assert heard == [("mine", renamed)]  # the other node's write reaches nobody subscribed to mine
        assert aspace.read_attribute_value(mine, name).Value.Value == ua.LocalizedText("Charge")
        assert aspace.read_attribute_value(other, name).Value.Value == ua.LocalizedText("Other")
        assert aspace.read_attribute_value(UNITS_FIRST_SOC, name).Value.Value == ua.LocalizedText("SocPct")
        aspace.set_attribute_value_callback(  # keyword arguments, as a caller may pass them
            nodeid=other, attr=ua.AttributeIds.Description,
            callback=lambda nodeid, attr: ua.DataValue(ua.Variant(ua.LocalizedText("c"))))
        assert aspace.read_attribute_value(other, ua.AttributeIds.Description).Value.Value == ua.LocalizedText("c")
        assert aspace.read_attribute_value(mine, ua.AttributeIds.Description).Value.Value.Text == "State of charge"
        Compactor(aspace).compact()  # compaction leaves shared and computed attributes alone
        assert aspace[third.child("PowerKw")].attributes[name] is aspace[second.child("PowerKw")].attributes[name]
        assert aspace.read_attribute_value(other, ua.AttributeIds.Description).Value.Value == ua.LocalizedText("c")

    asyncio.run(scenario())


UNITS_FIRST_SOC = ua.NodeId("Unit/gw/u1.SocPct", 2)


def test_values_are_per_node_and_names_per_instance() -> None:
    async def scenario() -> None:
        server, _, (_, second, third) = await build(stamped=True)
        aspace = server.iserver.aspace
        value = ua.AttributeIds.Value
        assert aspace[second.child("SocPct")].attributes[value] is not aspace[third.child("SocPct")].attributes[value]
        forty_two = ua.DataValue(ua.Variant(42.0, ua.VariantType.Double))
        await server.write_attribute_value(second.child("SocPct"), forty_two)
        assert aspace.read_attribute_value(second.child("SocPct"), value).Value.Value == 42.0
        assert aspace.read_attribute_value(third.child("SocPct"), value).StatusCode.name == "BadWaitingForInitialData"
        for unit_id, instance in (("u2", second), ("u3", third)):
            browse = aspace.read_attribute_value(instance.node.nodeid, ua.AttributeIds.BrowseName).Value.Value
            assert browse.Name == unit_id
            assert (await instance.node.read_display_name()).Text == unit_id
            assert await server.get_node(instance.child("SocPct")).get_parent() == instance.node

    asyncio.run(scenario())


def test_a_stamped_unit_can_be_deleted_and_created_again_and_duplicates_are_refused() -> None:
    async def scenario() -> None:
        server, types, gateway, (_, second, third) = await build_with_types(stamped=True)
        aspace = server.iserver.aspace
        folder = gateway.child("Units")
        nodeids = model.instance_nodeids(server, second)
        await model.delete_instance(server, folder, second)
        assert not any(nodeid in aspace for nodeid in nodeids)
        assert second.node.nodeid not in {ref.NodeId for ref in aspace[folder].references}
        again = await model.create_unit(server, types, gateway, "gw", "u2", lambda method, unit: None)
        assert model.instance_nodeids(server, again) == nodeids
        references = list(aspace[folder].references)
        with pytest.raises(ua.UaStatusCodeError, match="BadNodeIdExists"):
            await model.create_unit(server, types, gateway, "gw", "u3", lambda method, unit: None)
        assert aspace[folder].references == references  # nothing half-added
        assert all(nodeid in aspace for nodeid in model.instance_nodeids(server, third))

    asyncio.run(scenario())


def test_the_node_id_attribute_is_built_when_read_and_a_write_to_it_stays_on_its_node() -> None:
    async def scenario() -> None:
        server, _, (_, second, third) = await build(stamped=True)
        aspace = server.iserver.aspace
        mine, other = second.child("SocPct"), third.child("SocPct")
        name = ua.AttributeIds.NodeId
        assert isinstance(aspace[mine].attributes[name], NodeIdAttribute)  # no DataValue kept per node
        first = aspace.read_attribute_value(mine, name)
        assert first.Value == ua.Variant(mine, ua.VariantType.NodeId) and first.StatusCode.is_good()
        assert aspace.read_attribute_value(mine, name) is not first  # built on each read, never stored
        heard: list[ua.DataValue] = []

        async def callback(handle: int, value: ua.DataValue) -> None:
            heard.append(value)

        assert aspace.add_datachange_callback(mine, name, callback)[0].is_good()
        written = ua.DataValue(ua.Variant(ua.NodeId("elsewhere", 1), ua.VariantType.NodeId))
        await server.write_attribute_value(mine, written, name)
        assert heard == [written] and aspace.read_attribute_value(mine, name) == written
        assert aspace.read_attribute_value(other, name).Value.Value == other  # the other node is untouched

    asyncio.run(scenario())
