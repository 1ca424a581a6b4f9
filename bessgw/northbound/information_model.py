"""The address space: our ObjectTypes and the Campus → Gateways → Units instances.

``BatteryUnitType`` and ``GatewayType`` are declared once in our own namespace, with every variable an
``AnalogItemType`` carrying ``EngineeringUnits`` (UNECE codes) and ``EURange`` where it is a measurement,
and with ``SetPower`` declared on the type. Instances are created from the types (asyncua instantiates
every Mandatory child), so a client that understands the type understands every unit. NodeIds are
readable strings (``Unit/<gateway>/<unit>.SocPct``) so an operator can find a node from a log line.

This module knows asyncua; nothing it returns leaves ``bessgw.northbound``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from asyncua import Node, Server, ua

from bessgw.model import UnitState
from bessgw.northbound.prototype import Prototype

NAMESPACE_URI = "urn:bessgw:opcua"

# UNECE Recommendation 20 common codes (OPC UA Part 8: UnitId = the code's ASCII packed big-endian)
PERCENT = ("P1", "%", "percent")
KILOWATT = ("KWT", "kW", "kilowatt")
KILOVAR = ("KVR", "kvar", "kilovar")
KILOWATT_HOUR = ("KWH", "kWh", "kilowatt hour")
VOLT = ("VLT", "V", "volt")
AMPERE = ("AMP", "A", "ampere")
CELSIUS = ("CEL", "°C", "degree Celsius")
SECOND = ("SEC", "s", "second")
UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True)
class Variable:
    """One variable of a type: browse name, data type, unit, range, and whether operators may write it."""

    name: str
    variant: ua.VariantType
    description: str
    unit: tuple[str, str, str] | None = None
    eu_range: tuple[float, float] | None = None
    writable: bool = False
    array: bool = False


_D, _S, _B, _U = ua.VariantType.Double, ua.VariantType.String, ua.VariantType.Boolean, ua.VariantType.UInt32

#: the unit's live values; the publisher maps each name to a telemetry/limits field (see publisher.py)
UNIT_VARIABLES: tuple[Variable, ...] = (
    Variable("SocPct", _D, "State of charge", PERCENT, (0.0, 100.0)),
    Variable("SohPct", _D, "State of health", PERCENT, (0.0, 100.0)),
    Variable("PowerKw", _D, "Active power, > 0 discharging into the grid", KILOWATT, (-1000.0, 1000.0)),
    Variable("ReactivePowerKvar", _D, "Reactive power", KILOVAR, (-1000.0, 1000.0)),
    Variable("DcVoltageV", _D, "DC bus voltage", VOLT, (0.0, 1500.0)),
    Variable("DcCurrentA", _D, "DC current, > 0 discharging", AMPERE, (-5000.0, 5000.0)),
    Variable("CellTempMinC", _D, "Lowest cell temperature", CELSIUS, (-40.0, 80.0)),
    Variable("CellTempMaxC", _D, "Highest cell temperature", CELSIUS, (-40.0, 80.0)),
    Variable("CellVoltageMinV", _D, "Lowest cell voltage", VOLT, (0.0, 5.0)),
    Variable("CellVoltageMaxV", _D, "Highest cell voltage", VOLT, (0.0, 5.0)),
    Variable("MaxChargeKw", _D, "Negotiated charge limit now (vendor ∩ chemistry ∩ site)", KILOWATT, (0.0, 1000.0)),
    Variable("MaxDischargeKw", _D, "Negotiated discharge limit now", KILOWATT, (0.0, 1000.0)),
    Variable("MaxReactiveKvar", _D, "Negotiated reactive power limit", KILOVAR, (0.0, 1000.0)),
    Variable("PowerSetpointKw", _D, "Last accepted active power setpoint; write to command", KILOWATT,
             (-1000.0, 1000.0), writable=True),
    Variable("ReactivePowerSetpointKvar", _D, "Last accepted reactive power setpoint; write to command",
             KILOVAR, (-1000.0, 1000.0), writable=True),
    Variable("State", _S, "Operating state: unknown, offline, standby, running, fault"),
    Variable("Connected", _B, "Whether the gateway has a working link to the unit"),
    Variable("QualityReason", _S, "Why the data is not Good, if it is not"),
    Variable("RefusedReason", _S, "Why negotiation refused the unit, if it did"),
    Variable("AlarmActive", _B, "Any vendor alarm bit set"),
    Variable("Alarms", _U, "Vendor alarm bitfield"),
    Variable("Warnings", _U, "Vendor warning bitfield"),
    Variable("AlarmNames", _S, "Names of the active alarms the driver knows", array=True),
)

#: the unit's capability offer, as properties (they change only when the unit re-identifies)
CAPABILITY_PROPERTIES: tuple[Variable, ...] = (
    Variable("Vendor", _S, "Vendor"),
    Variable("Model", _S, "Model"),
    Variable("SerialNumber", _S, "Serial number"),
    Variable("FirmwareVersion", _S, "Firmware version"),
    Variable("ProtocolVersion", _S, "Protocol version"),
    Variable("Chemistry", _S, "Cell chemistry"),
    Variable("EnergyKwh", _D, "Usable energy", KILOWATT_HOUR),
    Variable("NameplateChargeKw", _D, "Nameplate charge power", KILOWATT),
    Variable("NameplateDischargeKw", _D, "Nameplate discharge power", KILOWATT),
    Variable("NameplateReactiveKvar", _D, "Nameplate reactive power", KILOVAR),
    Variable("SocMinPct", _D, "Lowest usable state of charge", PERCENT),
    Variable("SocMaxPct", _D, "Highest usable state of charge", PERCENT),
)

GATEWAY_VARIABLES: tuple[Variable, ...] = (
    Variable("GatewayId", _S, "Gateway id"),
    Variable("SoftwareVersion", _S, "bessgw version"),
    Variable("UnitCount", _U, "Units configured on this gateway"),
    Variable("UnitsGood", _U, "Units with good data"),
    Variable("UnitsStale", _U, "Units with stale data (Uncertain)"),
    Variable("UnitsBad", _U, "Units with bad data or no link"),
    Variable("AvailableChargeKw", _D, "Sum of the units' negotiated charge limits", KILOWATT),
    Variable("AvailableDischargeKw", _D, "Sum of the units' negotiated discharge limits", KILOWATT),
    Variable("EnergyKwh", _D, "Sum of the units' usable energy", KILOWATT_HOUR),
    Variable("SocPct", _D, "Energy-weighted state of charge", PERCENT, (0.0, 100.0)),
)

#: ``Objects/Campus`` itself, with federation: the campus-wide aggregate of this gateway's campus view
CAMPUS_VARIABLES: tuple[Variable, ...] = (
    Variable("AvailableChargeKw", _D, "Campus: sum of the Good units' available charge power", KILOWATT),
    Variable("AvailableDischargeKw", _D, "Campus: sum of the Good units' available discharge power", KILOWATT),
    Variable("EnergyKwh", _D, "Campus: sum of the Good units' usable energy", KILOWATT_HOUR),
    Variable("MeanSocPct", _D, "Campus: mean state of charge of the Good units", PERCENT, (0.0, 100.0)),
    Variable("UnitCount", _U, "Units on the campus (this gateway's and every known peer's)"),
    Variable("UnitsGood", _U, "Campus units with good data"),
    Variable("UnitsStale", _U, "Campus units with stale data (old, or their gateway suspected)"),
    Variable("UnitsBad", _U, "Campus units with bad data or an unreachable gateway"),
    *(Variable(f"Units{state.value.capitalize()}", _U, f"Campus units in state {state.value}")
      for state in UnitState),
    Variable("GatewaysAlive", _U, "Gateways of the campus seen alive (this one included)"),
    Variable("GatewaysSuspect", _U, "Gateways suspected (not answering probes)"),
    Variable("GatewaysDead", _U, "Gateways declared dead (not yet reaped)"),
)

#: ``Objects/Campus`` itself: campus dispatch through etcd (the campus setpoint, its allocator, the shortfall)
CAMPUS_DISPATCH_VARIABLES: tuple[Variable, ...] = (
    Variable("SetpointKw", _D, "Campus setpoint committed in etcd: active power for the whole campus", KILOWATT),
    Variable("SetpointKvar", _D, "Campus setpoint: reactive power for the whole campus", KILOVAR),
    Variable("SetpointRevision", _D, "etcd revision of the campus setpoint (0: none)"),
    Variable("SetpointCommandId", _S, "Command id of the campus setpoint (empty: none)"),
    Variable("Allocator", _S, "Gateway that splits the campus setpoint into shares now"),
    Variable("ShortfallKw", _D, "Part of the campus setpoint the campus cannot deliver now", KILOWATT),
    Variable("ShareKw", _D, "This gateway's share of the campus setpoint", KILOWATT),
)
CAMPUS_SET_POWER_OUTPUTS = (("revision", _D, "etcd revision at which the campus setpoint was committed"),
                            ("duplicate", _B, "True when the command id was committed before (no second effect)"))


async def create_campus_dispatch(server: Server, types: Types) -> Instance:
    """The campus dispatch variables, directly on ``Objects/Campus`` (``Campus.<Name>``), waiting for data."""
    campus = ua.NodeId("Campus", types.ns)
    values = {variable.name: await _add_variable(server, campus, types.ns, variable, mandatory=False)
              for variable in CAMPUS_DISPATCH_VARIABLES}
    instance = Instance(node=server.get_node(campus), values=values)
    await mark_waiting(server, instance)
    return instance


#: a peer gateway as this gateway sees it through federation (read-only, no SetPower)
PEER_GATEWAY_VARIABLES: tuple[Variable, ...] = (
    Variable("Status", _S, "Membership status seen from this gateway: alive, suspect, dead, left"),
    Variable("Address", _S, "The peer's gossip address"),
    Variable("UnitCount", _U, "Units the peer announces"),
)

#: a peer's unit: the summary the peer gossips, with this gateway's judgement of its quality
PEER_UNIT_VARIABLES: tuple[Variable, ...] = (
    Variable("SocPct", _D, "State of charge", PERCENT, (0.0, 100.0)),
    Variable("PowerKw", _D, "Active power, > 0 discharging into the grid", KILOWATT, (-1000.0, 1000.0)),
    Variable("AvailableChargeKw", _D, "Charge power the unit can take now", KILOWATT),
    Variable("AvailableDischargeKw", _D, "Discharge power the unit can give now", KILOWATT),
    Variable("EnergyKwh", _D, "Usable energy", KILOWATT_HOUR),
    Variable("State", _S, "Operating state: unknown, offline, standby, running, fault"),
    Variable("DataAgeS", _D, "Seconds since the owning gateway measured the values", SECOND),
    Variable("QualityReason", _S, "Why the data is not Good, if it is not"),
)

SET_POWER_INPUTS = (("p_kw", _D, "Active power in kW, > 0 discharges"),
                    ("q_kvar", _D, "Reactive power in kvar"),
                    ("command_id", _S, "Caller's id: repeating it repeats the answer without a second write"))
SET_POWER_OUTPUTS = (("applied_p_kw", _D, "Active power written"),
                     ("applied_q_kvar", _D, "Reactive power written"))


def unit_id_code(code: str) -> int:
    value = 0
    for char in code:
        value = (value << 8) | ord(char)
    return value


def eu_information(unit: tuple[str, str, str]) -> ua.EUInformation:
    code, symbol, description = unit
    return ua.EUInformation(NamespaceUri=UNECE_NAMESPACE, UnitId=unit_id_code(code),
                            DisplayName=ua.LocalizedText(symbol), Description=ua.LocalizedText(description))


@dataclass
class Types:
    """NodeIds of our types and the namespace index."""

    ns: int
    battery_unit: ua.NodeId
    gateway: ua.NodeId
    templates: dict[ua.NodeId, list[_TemplateNode]] = field(default_factory=dict)
    prototypes: dict[ua.NodeId, Prototype] = field(default_factory=dict)  #: the first instance of each type
    peer_gateway: ua.NodeId | None = None  #: set by :func:`create_campus_types` (federation only)
    peer_unit: ua.NodeId | None = None


@dataclass
class Instance:
    """A created object: its node and its children's NodeIds by browse name."""

    node: Node
    values: dict[str, ua.NodeId]

    def child(self, name: str) -> ua.NodeId:
        return self.values[name]


def _qname(ns: int, name: str) -> ua.QualifiedName:
    return ua.QualifiedName(name, ns)


async def _add_variable(server: Server, parent: ua.NodeId, ns: int, variable: Variable, *,
                        prop: bool = False, mandatory: bool = True) -> ua.NodeId:
    """Add a type child: AnalogItemType when it has a unit, PropertyType for properties, Mandatory.

    With ``mandatory=False`` the variable is a plain instance child (the Campus folder's aggregate).
    """
    nodeid = ua.NodeId(f"{parent.Identifier}.{variable.name}", ns)
    item = ua.AddNodesItem()
    item.RequestedNewNodeId = nodeid
    item.BrowseName = _qname(ns, variable.name)
    item.NodeClass = ua.NodeClass.Variable
    item.ParentNodeId = parent
    if prop:
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasProperty)
        item.TypeDefinition = ua.NodeId(ua.ObjectIds.PropertyType)
    else:
        item.ReferenceTypeId = ua.NodeId(ua.ObjectIds.HasComponent)
        analog = variable.unit is not None
        item.TypeDefinition = ua.NodeId(ua.ObjectIds.AnalogItemType if analog else ua.ObjectIds.BaseDataVariableType)
    attrs = ua.VariableAttributes()
    attrs.DisplayName = ua.LocalizedText(variable.name)
    attrs.Description = ua.LocalizedText(variable.description)
    attrs.DataType = ua.NodeId(getattr(ua.ObjectIds, variable.variant.name))
    if variable.array:
        attrs.ValueRank = ua.ValueRank.OneDimension
        attrs.ArrayDimensions = [0]
        initial = ua.Variant([], variable.variant, is_array=True)
    else:
        attrs.ValueRank = ua.ValueRank.Scalar
        initial = ua.Variant(_zero(variable.variant), variable.variant)
    attrs.Value = initial
    access = ua.AccessLevel.CurrentRead.mask
    if variable.writable:
        access |= ua.AccessLevel.CurrentWrite.mask
    attrs.AccessLevel = attrs.UserAccessLevel = access
    attrs.MinimumSamplingInterval = 0.0
    item.NodeAttributes = attrs
    result = (await server.iserver.isession.add_nodes([item]))[0]
    result.StatusCode.check()
    node = server.get_node(nodeid)
    if mandatory:
        await node.set_modelling_rule(True)
    if variable.unit is not None and not prop:
        eu = await node.add_property(ua.NodeId(f"{nodeid.Identifier}.EngineeringUnits", ns),
                                     _qname(0, "EngineeringUnits"), eu_information(variable.unit))
        low, high = variable.eu_range or (-1e9, 1e9)
        rng = await node.add_property(ua.NodeId(f"{nodeid.Identifier}.EURange", ns), _qname(0, "EURange"),
                                      ua.Range(low, high))
        if mandatory:
            await eu.set_modelling_rule(True)
            await rng.set_modelling_rule(True)
    return nodeid


def _zero(variant: ua.VariantType) -> object:
    return {ua.VariantType.Double: 0.0, ua.VariantType.String: "", ua.VariantType.Boolean: False,
            ua.VariantType.UInt32: 0}[variant]


async def _add_method(server: Server, parent: ua.NodeId, ns: int, name: str, description: str,
                      inputs: tuple[tuple[str, ua.VariantType, str], ...],
                      outputs: tuple[tuple[str, ua.VariantType, str], ...]) -> None:
    def arguments(spec: tuple[tuple[str, ua.VariantType, str], ...]) -> list[ua.Argument]:
        return [ua.Argument(Name=arg, DataType=ua.NodeId(getattr(ua.ObjectIds, variant.name)), ValueRank=-1,
                            Description=ua.LocalizedText(text)) for arg, variant, text in spec]

    node = await server.get_node(parent).add_method(
        ua.NodeId(f"{parent.Identifier}.{name}", ns), _qname(ns, name), None, arguments(inputs), arguments(outputs)
    )
    await node.write_attribute(ua.AttributeIds.Description, ua.DataValue(ua.Variant(ua.LocalizedText(description))))
    await node.set_modelling_rule(True)
    for child in await node.get_children():
        await child.set_modelling_rule(True)


async def create_types(server: Server) -> Types:
    """Register our namespace and declare ``BatteryUnitType`` and ``GatewayType``."""
    ns = await server.register_namespace(NAMESPACE_URI)
    base = server.nodes.base_object_type
    unit_type = await base.add_object_type(ua.NodeId("BatteryUnitType", ns), _qname(ns, "BatteryUnitType"))
    for variable in UNIT_VARIABLES:
        await _add_variable(server, unit_type.nodeid, ns, variable)
    for variable in CAPABILITY_PROPERTIES:
        await _add_variable(server, unit_type.nodeid, ns, variable, prop=True)
    await _add_method(server, unit_type.nodeid, ns, "SetPower",
                      "Command active/reactive power; out of the negotiated limits is BadOutOfRange",
                      SET_POWER_INPUTS, SET_POWER_OUTPUTS)
    await _add_method(server, unit_type.nodeid, ns, "ResetFault", "Ask the unit to clear a latched fault (admin)",
                      (), ())
    gateway_type = await base.add_object_type(ua.NodeId("GatewayType", ns), _qname(ns, "GatewayType"))
    for variable in GATEWAY_VARIABLES:
        await _add_variable(server, gateway_type.nodeid, ns, variable)
    await _add_method(server, gateway_type.nodeid, ns, "SetPower",
                      "Command the gateway's units together, shared in proportion to their limits",
                      SET_POWER_INPUTS, SET_POWER_OUTPUTS)
    units = await gateway_type.add_folder(ua.NodeId("GatewayType.Units", ns), _qname(ns, "Units"))
    await units.set_modelling_rule(True)
    return Types(ns=ns, battery_unit=unit_type.nodeid, gateway=gateway_type.nodeid)


async def create_campus_types(server: Server, types: Types) -> None:
    """Declare ``PeerGatewayType`` and ``PeerUnitType`` (only when the server shows a campus view).

    Lighter than ``GatewayType``/``BatteryUnitType``: a peer's units are commanded by their own gateway,
    so these types declare no SetPower/ResetFault and no writable variable at all.
    """
    ns = types.ns
    base = server.nodes.base_object_type
    gateway_type = await base.add_object_type(ua.NodeId("PeerGatewayType", ns), _qname(ns, "PeerGatewayType"))
    for variable in PEER_GATEWAY_VARIABLES:
        await _add_variable(server, gateway_type.nodeid, ns, variable)
    units = await gateway_type.add_folder(ua.NodeId("PeerGatewayType.Units", ns), _qname(ns, "Units"))
    await units.set_modelling_rule(True)
    unit_type = await base.add_object_type(ua.NodeId("PeerUnitType", ns), _qname(ns, "PeerUnitType"))
    for variable in PEER_UNIT_VARIABLES:
        await _add_variable(server, unit_type.nodeid, ns, variable)
    types.peer_gateway, types.peer_unit = gateway_type.nodeid, unit_type.nodeid


@dataclass(frozen=True)
class _TemplateNode:
    """One Mandatory node under a type, ready to be copied under an instance."""

    path: str  # relative to the instance: "SocPct", "SocPct.EURange"
    parent: str  # "" for the instance itself
    item: ua.AddNodesItem


_ATTRIBUTE_STRUCTS = {ua.NodeClass.Object: ua.ObjectAttributes, ua.NodeClass.Variable: ua.VariableAttributes,
                      ua.NodeClass.Method: ua.MethodAttributes}
_NOT_COPIED = {"BodyLength", "TypeId", "SpecifiedAttributes", "Encoding", "IsAbstract"}
def _template(server: Server, types: Types, type_id: ua.NodeId) -> list[_TemplateNode]:
    """The Mandatory children of a type, read once from the address space.

    asyncua's ``instantiate`` browses the type again for every instance (~50-250 ms per unit, all of it
    blocking the event loop); copying a cached template costs one ``add_nodes`` call.
    """
    if type_id in types.templates:
        return types.templates[type_id]
    aspace = server.iserver.aspace
    mandatory = ua.NodeId(ua.ObjectIds.ModellingRule_Mandatory)
    nodes: list[_TemplateNode] = []
    pending = [(type_id, "")]
    while pending:
        source, path = pending.pop(0)
        for ref in aspace[source].references:
            if not ref.IsForward or ref.ReferenceTypeId not in _HIERARCHICAL or ref.NodeId not in aspace:
                continue
            child = aspace[ref.NodeId]
            rules = [r.NodeId for r in child.references
                     if r.IsForward and r.ReferenceTypeId == ua.NodeId(ua.ObjectIds.HasModellingRule)]
            if mandatory not in rules:
                continue
            item = ua.AddNodesItem()
            item.BrowseName = ref.BrowseName
            item.NodeClass = ref.NodeClass
            item.ReferenceTypeId = ref.ReferenceTypeId
            item.TypeDefinition = next((r.NodeId for r in child.references if r.IsForward and r.ReferenceTypeId
                                        == ua.NodeId(ua.ObjectIds.HasTypeDefinition)), ua.NodeId())
            struct = _ATTRIBUTE_STRUCTS[ref.NodeClass]()
            for name in (f.name for f in fields(struct)):
                if name.startswith("_") or name in _NOT_COPIED:
                    continue
                value = server.read_attribute_value(ref.NodeId, getattr(ua.AttributeIds, name))
                if value.StatusCode is not None and value.StatusCode.is_good() and value.Value is not None:
                    setattr(struct, name, value.Value if name == "Value" else value.Value.Value)
            item.NodeAttributes = struct
            child_path = f"{path}.{ref.BrowseName.Name}" if path else ref.BrowseName.Name
            nodes.append(_TemplateNode(child_path, path, item))
            pending.append((ref.NodeId, child_path))
    types.templates[type_id] = nodes
    return nodes


async def _instance(server: Server, types: Types, parent: Node, nodeid: ua.NodeId, name: str,
                    type_id: ua.NodeId) -> Instance:
    """Create an object of ``type_id`` with copies of the type's Mandatory children.

    The first instance of a type is created by asyncua (``add_nodes``, one call); later ones are stamped
    from it (:mod:`prototype`), ~20× faster.
    """
    templates = _template(server, types, type_id)
    prototype = types.prototypes.get(type_id)
    if prototype is not None:
        nodeids = prototype.stamp(server.iserver.aspace, nodeid, parent.nodeid, name)
        return Instance(node=server.get_node(nodeid),
                        values={t.path: nodeids[t.path] for t in templates if not t.parent})
    root = ua.AddNodesItem()
    root.RequestedNewNodeId = nodeid
    root.BrowseName = _qname(types.ns, name)
    root.NodeClass = ua.NodeClass.Object
    root.ParentNodeId = parent.nodeid
    root.ReferenceTypeId = ua.NodeId(ua.ObjectIds.Organizes)
    root.TypeDefinition = type_id
    attrs = ua.ObjectAttributes()
    attrs.DisplayName = ua.LocalizedText(name)
    root.NodeAttributes = attrs
    items = [root]
    values: dict[str, ua.NodeId] = {}
    created = {"": nodeid}  # one NodeId object per node: the references to a parent share it (memory)
    for template in templates:
        item = copy.copy(template.item)
        item.RequestedNewNodeId = created[template.path] = ua.NodeId(f"{nodeid.Identifier}.{template.path}",
                                                                     nodeid.NamespaceIndex)
        item.ParentNodeId = created[template.parent]
        items.append(item)
        if not template.parent:
            values[template.path] = item.RequestedNewNodeId
    for result in await server.iserver.isession.add_nodes(items):
        result.StatusCode.check()
    try:
        types.prototypes[type_id] = Prototype(server.iserver.aspace, nodeid, parent.nodeid,
                                              [item.RequestedNewNodeId for item in items])
    except ValueError:  # not a shape stamping knows (it says why): every instance made by asyncua, as before
        pass
    return Instance(node=server.get_node(nodeid), values=values)


async def create_gateway(server: Server, types: Types, gateway_id: str) -> Instance:
    """``Objects/Campus/Gateways/<id>`` (the campus aggregate is this gateway's view until federation)."""
    ns = types.ns
    campus = await server.nodes.objects.add_folder(ua.NodeId("Campus", ns), _qname(ns, "Campus"))
    gateways = await campus.add_folder(ua.NodeId("Campus/Gateways", ns), _qname(ns, "Gateways"))
    instance = await _instance(server, types, gateways, ua.NodeId(f"Gateway/{gateway_id}", ns), gateway_id,
                               types.gateway)
    await mark_waiting(server, instance)
    return instance


async def create_campus_aggregate(server: Server, types: Types) -> Instance:
    """The campus-wide aggregate variables, directly on ``Objects/Campus`` (``Campus.<Name>`` NodeIds)."""
    campus = ua.NodeId("Campus", types.ns)
    values = {variable.name: await _add_variable(server, campus, types.ns, variable, mandatory=False)
              for variable in CAMPUS_VARIABLES}
    instance = Instance(node=server.get_node(campus), values=values)
    await mark_waiting(server, instance)
    return instance


def gateways_folder(types: Types) -> ua.NodeId:
    return ua.NodeId("Campus/Gateways", types.ns)


async def create_peer_gateway(server: Server, types: Types, gateway_id: str) -> Instance:
    """``Objects/Campus/Gateways/<peer>``, a ``PeerGatewayType`` (NodeId ``Gateway/<peer>``)."""
    assert types.peer_gateway is not None, "create_campus_types first"
    instance = await _instance(server, types, server.get_node(gateways_folder(types)),
                               ua.NodeId(f"Gateway/{gateway_id}", types.ns), gateway_id, types.peer_gateway)
    await mark_waiting(server, instance)
    return instance


async def create_peer_unit(server: Server, types: Types, gateway: Instance, gateway_id: str,
                           unit_id: str) -> Instance:
    """``.../Gateways/<peer>/Units/<unit>``, a ``PeerUnitType`` (NodeId ``Unit/<peer>/<unit>``)."""
    assert types.peer_unit is not None, "create_campus_types first"
    instance = await _instance(server, types, server.get_node(gateway.child("Units")),
                               ua.NodeId(f"Unit/{gateway_id}/{unit_id}", types.ns), unit_id, types.peer_unit)
    await mark_waiting(server, instance)
    return instance


async def create_unit(server: Server, types: Types, gateway: Instance, gateway_id: str, unit_id: str,
                      link: Callable[[Node, ua.NodeId], None]) -> Instance:
    """``.../Gateways/<gw>/Units/<unit>``; ``link(method_node, unit_nodeid)`` wires its methods."""
    units_folder = server.get_node(gateway.child("Units"))
    instance = await _instance(server, types, units_folder, ua.NodeId(f"Unit/{gateway_id}/{unit_id}", types.ns),
                               unit_id, types.battery_unit)
    for name in ("SetPower", "ResetFault"):
        link(server.get_node(instance.child(name)), instance.node.nodeid)
    await mark_waiting(server, instance)
    return instance


async def mark_waiting(server: Server, instance: Instance) -> None:
    """Nothing is known yet: every value starts Bad (WaitingForInitialData), never a Good zero."""
    waiting = ua.DataValue(ua.Variant(), StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData))
    for name, nodeid in instance.values.items():
        if name not in ("SetPower", "ResetFault"):
            await server.write_attribute_value(nodeid, waiting)


def instance_nodeids(server: Server, instance: Instance) -> list[ua.NodeId]:
    """The instance's node and every node under it (hierarchical references, forward)."""
    nodeids: list[ua.NodeId] = []
    pending = [instance.node.nodeid]
    aspace = server.iserver.aspace
    while pending:
        nodeid = pending.pop()
        nodeids.append(nodeid)
        for ref in aspace[nodeid].references:
            if ref.IsForward and ref.ReferenceTypeId in _HIERARCHICAL and ref.NodeId in aspace:
                pending.append(ref.NodeId)
    return nodeids


async def delete_instance(server: Server, parent: ua.NodeId, instance: Instance) -> None:
    """Delete an instance and everything under it.

    asyncua's ``delete_nodes`` scans the whole address space for references to every deleted node
    (about a second per unit, blocking the event loop). Only the parent's reference points into the
    instance from outside, so delete that one and the nodes themselves without the scan.
    """
    nodeids = instance_nodeids(server, instance)
    aspace = server.iserver.aspace
    service = server.iserver.node_mgt_service
    service.delete_references([
        ua.DeleteReferencesItem(SourceNodeId=parent, ReferenceTypeId=ref.ReferenceTypeId, IsForward=ref.IsForward,
                                TargetNodeId=instance.node.nodeid, DeleteBidirectional=False)
        for ref in list(aspace[parent].references) if ref.NodeId == instance.node.nodeid
    ])
    results = service.delete_nodes(ua.DeleteNodesParameters(NodesToDelete=[
        ua.DeleteNodesItem(NodeId=nodeid, DeleteTargetReferences=False) for nodeid in nodeids]))
    for result in results:
        result.check()


_HIERARCHICAL = frozenset(ua.NodeId(ref) for ref in (ua.ObjectIds.HasComponent, ua.ObjectIds.HasProperty,
                                                      ua.ObjectIds.Organizes))
