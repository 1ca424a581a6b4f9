"""Instances of a type stamped from the first one asyncua created: the same nodes, ~20× faster, less garbage.

asyncua's ``add_nodes`` builds every node attribute by attribute (24 getattr/Variant/DataValue/
AttributeValue rounds per node, ~70 nodes per unit): ~50 ms per unit, all of it blocking the event loop,
so 1,000 units took longer to show than the daemon's start timeout — and :mod:`compaction` then threw
most of those objects away again. Every instance of a type is the same tree of nodes but for its NodeIds,
its name and its parent, so the first instance is created by asyncua and snapshotted here, and later ones
are copies of the snapshot:

* static attributes (DataType, Description, AccessLevel, ...: all but NodeId and Value) are one read-only
  :class:`SharedAttribute` per node of the type, shared by every copy; whatever changes one (a write, a
  subscription) first gives that node its own copy (:func:`compaction.unshare_before_changes`);
* ``Value`` attributes are each node's own :class:`SlimAttribute` (the publisher writes them in place),
  holding the snapshot's DataValue until the first write;
* the NodeId attribute is a :class:`NodeIdAttribute` (its DataValue built when read);
* the root's name, and every reference between nodes of the instance (or to its
  parent) are the new instance's; references out of the instance (type definitions, modelling rules)
  are the snapshot's objects, which nothing changes in place;
* ``Value`` attributes get the creation time as asyncua gives it.

``tests/unit/test_opcua_prototype.py`` compares stamped instances with asyncua-created ones attribute by
attribute and reference by reference.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, replace
from typing import Any

from asyncua import ua
from asyncua.server.address_space import NodeData

from bessgw.northbound.compaction import NodeIdAttribute, SharedAttribute, SlimAttribute, unshare_before_changes

_NODE_ID = ua.AttributeIds.NodeId
_VALUE = ua.AttributeIds.Value
_BROWSE_NAME = ua.AttributeIds.BrowseName
_DISPLAY_NAME = ua.AttributeIds.DisplayName
_NAMES = (_BROWSE_NAME, _DISPLAY_NAME)


@dataclass(frozen=True)
class _Reference:
    """A reference of a snapshot node: the object itself, or where its target sits in the instance."""

    reference: ua.ReferenceDescription
    target: str | None  # path of the target inside the instance ("" the root), "^" the parent, None outside


@dataclass(frozen=True)
class _Node:
    path: str  # relative to the root's identifier: "" (the root), "SocPct", "SocPct.EURange"
    #: per attribute: its snapshot value, and the attribute object every copy shares (None: each its own)
    attributes: tuple[tuple[ua.AttributeIds, ua.DataValue | None, SharedAttribute | None], ...]
    references: tuple[_Reference, ...]


class Prototype:
    """A snapshot of one instance (every node under its root), able to stamp copies of it."""

    def __init__(self, aspace: Any, root: ua.NodeId, parent: ua.NodeId, nodeids: list[ua.NodeId]) -> None:
        """Snapshot ``nodeids`` (the instance's nodes, root first) right after asyncua created them."""
        prefix = f"{root.Identifier}."
        paths = {root: ""}
        for nodeid in nodeids[1:]:
            if not (isinstance(nodeid.Identifier, str) and nodeid.Identifier.startswith(prefix)):
                raise ValueError(f"{nodeid} is not named under {root}")
            paths[nodeid] = nodeid.Identifier[len(prefix):]
        name = aspace.read_attribute_value(root, _BROWSE_NAME).Value.Value
        self.namespace = name.NamespaceIndex  #: of the root's browse name
        nodes = []
        for nodeid in nodeids:
            data = aspace[nodeid]
            if data.call is not None:
                raise ValueError(f"{nodeid} is already linked to a method: snapshot before linking")
            attributes = []
            for attribute_id, attribute in data.attributes.items():
                if attribute.value_callback is not None or attribute.value_setter is not None \
                        or attribute.datachange_callbacks:
                    raise ValueError(f"{nodeid} attribute {attribute_id!r} is watched: snapshot before serving")
                own = attribute_id in (_NODE_ID, _VALUE) or (nodeid == root and attribute_id in _NAMES)
                attributes.append((attribute_id, attribute.value, None if own else SharedAttribute(attribute.value)))
            references = tuple(_Reference(ref, "^" if ref.NodeId == parent else paths.get(ref.NodeId))
                               for ref in data.references)
            nodes.append(_Node(paths[nodeid], tuple(attributes), references))
        self._nodes = tuple(nodes)
        from_parent = [ref for ref in aspace[parent].references if ref.NodeId == root and ref.IsForward]
        if len(from_parent) != 1:
            raise ValueError(f"{parent} does not refer to {root} exactly once")
        self._from_parent = from_parent[0]

    def stamp(self, aspace: Any, root: ua.NodeId, parent: ua.NodeId, name: str) -> dict[str, ua.NodeId]:
        """Add a copy named ``name`` with root ``root`` under ``parent``; NodeIds of every node by path.

        Raises ``UaStatusCodeError`` as ``add_nodes`` would: BadNodeIdExists, BadParentNodeIdInvalid.
        """
        if root in aspace:
            ua.StatusCode(ua.StatusCodes.BadNodeIdExists).check()
        parent_data = aspace.get(parent)
        if parent_data is None:
            ua.StatusCode(ua.StatusCodes.BadParentNodeIdInvalid).check()
        browse_name = ua.QualifiedName(name, self.namespace)
        display_name = ua.LocalizedText(name)
        parent_names = (aspace.read_attribute_value(parent, _BROWSE_NAME).Value.Value,
                        aspace.read_attribute_value(parent, _DISPLAY_NAME).Value.Value)
        nodeids = {"": root}
        for node in self._nodes[1:]:
            nodeids[node.path] = ua.NodeId(f"{root.Identifier}.{node.path}", root.NamespaceIndex)
        unshare_before_changes(aspace)
        now = dt.datetime.now(dt.timezone.utc)
        created = []
        for node in self._nodes:
            nodeid = nodeids[node.path]
            if node.path and nodeid in aspace:
                ua.StatusCode(ua.StatusCodes.BadNodeIdExists).check()
            data = NodeData(nodeid)
            attributes = data.attributes
            for attribute_id, value, shared in node.attributes:
                if shared is not None:
                    attributes[attribute_id] = shared
                    continue
                if attribute_id == _NODE_ID:
                    attributes[attribute_id] = NodeIdAttribute(nodeid)
                    continue
                if value is not None and attribute_id == _VALUE and value.SourceTimestamp is not None:
                    value = replace(value, SourceTimestamp=now,
                                    ServerTimestamp=now if value.ServerTimestamp is not None else None)
                elif not node.path and attribute_id == _BROWSE_NAME:
                    value = ua.DataValue(ua.Variant(browse_name, ua.VariantType.QualifiedName))
                elif not node.path and attribute_id == _DISPLAY_NAME:
                    value = ua.DataValue(ua.Variant(display_name, ua.VariantType.LocalizedText))
                attributes[attribute_id] = SlimAttribute(value)
            references = data.references
            for entry in node.references:
                if entry.target is None:
                    references.append(entry.reference)  # out of the instance: the same for every copy
                    continue
                reference = copy.copy(entry.reference)
                if entry.target == "^":
                    reference.NodeId = parent
                    reference.BrowseName, reference.DisplayName = parent_names
                else:
                    reference.NodeId = nodeids[entry.target]
                    if not entry.target:
                        reference.BrowseName, reference.DisplayName = browse_name, display_name
                references.append(reference)
            created.append(data)
        for data in created:
            aspace[data.nodeid] = data
        from_parent = copy.copy(self._from_parent)
        from_parent.NodeId, from_parent.BrowseName, from_parent.DisplayName = root, browse_name, display_name
        parent_data.references.append(from_parent)
        return nodeids
