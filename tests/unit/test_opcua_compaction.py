"""Address-space compaction: the same attributes, values and references, less memory, writes stay per node.

Two asyncua servers are built the same way (our types, a gateway, two units; no sockets: the servers are
initialised, never started); one is compacted, and every attribute of every node is compared.
"""

from __future__ import annotations

import asyncio

from asyncua import Server, ua

from bessgw.northbound import information_model as model
from bessgw.northbound.compaction import Compactor, SlimAttribute

UNITS = ("u1", "u2")


async def build() -> tuple[Server, list[model.Instance]]:
    server = Server()
    await server.init()
    types = await model.create_types(server)
    gateway = await model.create_gateway(server, types, "gw")
    units = []
    for unit_id in UNITS:  # every unit made by asyncua (stamped ones come compact: test_opcua_prototype.py)
        types.prototypes.pop(types.battery_unit, None)
        units.append(await model.create_unit(server, types, gateway, "gw", unit_id, lambda method, unit: None))
    return server, units


def attributes(server: Server, nodeid: ua.NodeId) -> dict[ua.AttributeIds, ua.DataValue]:
    node = server.iserver.aspace[nodeid]
    return {attribute_id: server.iserver.aspace.read_attribute_value(nodeid, attribute_id)
            for attribute_id in node.attributes}


def test_compacted_address_space_reads_exactly_like_the_original() -> None:
    async def scenario() -> None:
        plain, _ = await build()
        compacted, _ = await build()
        compactor = Compactor(compacted.iserver.aspace)
        compactor.compact()
        assert compactor.shared > compactor.attributes // 2  # most static values are shared
        plain_ids = set(plain.iserver.aspace.keys())
        assert plain_ids == set(compacted.iserver.aspace.keys())
        live = 0
        for nodeid in plain_ids:
            expected, actual = attributes(plain, nodeid), attributes(compacted, nodeid)
            assert expected.keys() == actual.keys(), nodeid
            for attribute_id, value in expected.items():
                if value.ServerTimestamp is not None:  # creation time of live values differs between servers
                    live += 1
                    if nodeid.NamespaceIndex == 0:
                        continue  # the server's own status (start and current time): different by nature
                    assert (actual[attribute_id].Value, actual[attribute_id].StatusCode) == \
                        (value.Value, value.StatusCode), (nodeid, attribute_id)
                    continue
                assert actual[attribute_id] == value, (nodeid, attribute_id)
            assert plain.iserver.aspace[nodeid].references == compacted.iserver.aspace[nodeid].references
        assert live > 0

    asyncio.run(scenario())


def test_a_write_to_a_shared_value_changes_only_its_own_node_and_reaches_subscribers() -> None:
    async def scenario() -> None:
        server, (first, second) = await build()
        compactor = Compactor(server.iserver.aspace)
        compactor.compact()
        aspace = server.iserver.aspace
        soc = [unit.child("SocPct") for unit in (first, second)]
        name = ua.AttributeIds.DisplayName
        assert aspace.read_attribute_value(soc[0], name) is aspace.read_attribute_value(soc[1], name)  # shared
        assert isinstance(aspace[soc[0]].attributes[name], SlimAttribute)
        heard: list[ua.DataValue] = []

        async def callback(handle: int, value: ua.DataValue) -> None:
            heard.append(value)

        status, handle = aspace.add_datachange_callback(soc[0], name, callback)
        assert status.is_good()
        renamed = ua.DataValue(ua.Variant(ua.LocalizedText("Charge")))
        await server.write_attribute_value(soc[0], renamed, name)
        assert heard == [renamed]
        assert aspace.read_attribute_value(soc[0], name).Value.Value == ua.LocalizedText("Charge")
        assert aspace.read_attribute_value(soc[1], name).Value.Value == ua.LocalizedText("SocPct")
        aspace.delete_datachange_callback(handle)
        await server.write_attribute_value(soc[0], ua.DataValue(ua.Variant(ua.LocalizedText("SoC"))), name)
        assert len(heard) == 1

    asyncio.run(scenario())


def test_watched_or_computed_attributes_are_left_alone() -> None:
    async def scenario() -> None:
        server, (unit, _) = await build()
        aspace = server.iserver.aspace
        soc, state = unit.child("SocPct"), unit.child("State")

        async def callback(handle: int, value: ua.DataValue) -> None:
            pass

        aspace.add_datachange_callback(soc, ua.AttributeIds.Value, callback)
        aspace.set_attribute_value_callback(state, ua.AttributeIds.Value,
                                            lambda nodeid, attr: ua.DataValue(ua.Variant("computed")))
        watched = aspace[soc].attributes[ua.AttributeIds.Value]
        computed = aspace[state].attributes[ua.AttributeIds.Value]
        Compactor(aspace).compact()
        assert aspace[soc].attributes[ua.AttributeIds.Value] is watched
        assert aspace[state].attributes[ua.AttributeIds.Value] is computed
        assert aspace.read_attribute_value(state, ua.AttributeIds.Value).Value.Value == "computed"

    asyncio.run(scenario())
