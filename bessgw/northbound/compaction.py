"""Shrinks asyncua's address space once it is built: the same nodes and values, a fraction of the memory.

asyncua keeps, for every attribute of every node, an ``AttributeValue`` (an object with a ``__dict__``
and its own empty callback dict) holding its own ``DataValue`` and ``Variant``: ~24 attributes a
variable, ~300 bytes each. With the standard address space (~6,000 nodes) and ~70 nodes per unit that
is most of the OPC UA server's memory (~0.5 MB per unit), although nearly all of those values are the
same from one node to the next (``WriteMask`` 0, ``Historizing`` false, the same ``DataType``, the same
``DisplayName`` under every unit). So, after the address space is built and after each unit is added:

* every attribute nobody watches is replaced by a slotted :class:`SlimAttribute` whose callback dict is
  created only when a subscription asks for one;
* equal DataValues without timestamps (everything but live values) are shared between nodes. asyncua
  never changes a stored DataValue in place — a write replaces it — so sharing is invisible to clients.

Nothing here changes what a client reads, browses or subscribes to; ``tests/unit/test_opcua_compaction.py``
compares a compacted address space with an untouched one attribute by attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any

from asyncua import ua

#: the shared-value table is dropped when it grows past this (values of removed units must not pile up)
MAX_SHARED_VALUES = 50_000


class _CallbacksOnDemand:
    """``datachange_callbacks`` as asyncua's attributes have it, the dict made only once someone subscribes."""

    __slots__ = ()
    _callbacks: dict[int, Any] | None

    @property
    def datachange_callbacks(self) -> dict[int, Any]:
        if self._callbacks is None:
            self._callbacks = {}
        return self._callbacks


class SlimAttribute(_CallbacksOnDemand):
    """asyncua's ``AttributeValue`` with slots; its callback dict exists only once someone subscribes."""

    __slots__ = ("_callbacks", "value", "value_callback", "value_setter")

    def __init__(self, value: ua.DataValue | None) -> None:
        self.value = value
        self.value_callback: Any = None
        self.value_setter: Any = None
        self._callbacks = None

    def __repr__(self) -> str:
        return f"SlimAttribute({self.value})"


class NodeIdAttribute(_CallbacksOnDemand):
    """The NodeId attribute of a stamped node (:mod:`prototype`): its DataValue is built when read, not kept.

    A stored ``DataValue(Variant(nodeid))`` is ~550 bytes for a value the node already holds; with ~20 to
    70 nodes per unit that was 7 MB at 200 units and 22 MB for a campus view of 2,000 peer units. Reads
    get an equal DataValue each time; a write (asyncua lets an admin write any attribute) is kept as
    written, like any attribute's.
    """

    __slots__ = ("_callbacks", "_nodeid", "_written", "value_callback", "value_setter")

    def __init__(self, nodeid: ua.NodeId) -> None:
        self._nodeid = nodeid
        self._written: ua.DataValue | None = None
        self.value_callback: Any = None
        self.value_setter: Any = None
        self._callbacks = None

    @property
    def value(self) -> ua.DataValue:
        if self._written is not None:
            return self._written
        return ua.DataValue(ua.Variant(self._nodeid, ua.VariantType.NodeId))

    @value.setter
    def value(self, value: ua.DataValue) -> None:
        self._written = value

    def __repr__(self) -> str:
        return f"NodeIdAttribute({self._nodeid})"


class SharedAttribute:
    """A static attribute shared by the same node of every stamped instance (:mod:`prototype`); read-only.

    Nothing can change it in place: it has no callbacks and refuses assignment. Every asyncua entry point
    that changes an attribute (a write, a subscription, a value callback or setter) first replaces it by a
    private :class:`SlimAttribute` of its node (:func:`unshare_before_changes`), so a change to one unit
    never shows on another.
    """

    __slots__ = ("_value",)

    _NO_CALLBACKS: MappingProxyType[int, Any] = MappingProxyType({})

    def __init__(self, value: ua.DataValue | None) -> None:
        self._value = value

    @property
    def value(self) -> ua.DataValue | None:
        return self._value

    @property
    def value_callback(self) -> None:
        return None

    @property
    def value_setter(self) -> None:
        return None

    @property
    def datachange_callbacks(self) -> MappingProxyType[int, Any]:
        return self._NO_CALLBACKS

    def __repr__(self) -> str:
        return f"SharedAttribute({self._value})"


#: attribute classes that are already as small as they get
_COMPACT = frozenset((SlimAttribute, SharedAttribute, NodeIdAttribute))

_CHANGES = ("write_attribute_value", "add_datachange_callback", "set_attribute_value_callback",
            "set_attribute_value_setter")


def unshare_before_changes(aspace: Any) -> None:
    """Make ``aspace`` give a node its own copy of a :class:`SharedAttribute` before changing it (idempotent).

    Wraps, on this address space object only, the four methods through which asyncua (and we) change an
    attribute: every one takes ``(nodeid, attribute_id, ...)``. The wrappers are plain functions that
    return the original's result (for the write, its coroutine): no extra await on the write path.
    """
    if getattr(aspace, "_bessgw_unshares", False):
        return
    get = aspace.get
    value = ua.AttributeIds.Value

    def unshare(nodeid: ua.NodeId, attribute_id: ua.AttributeIds) -> None:
        node = get(nodeid)
        if node is not None:
            attribute = node.attributes.get(attribute_id)
            if type(attribute) is SharedAttribute:
                node.attributes[attribute_id] = SlimAttribute(attribute.value)

    def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
        def changing(nodeid: ua.NodeId, attr: ua.AttributeIds, *args: Any, **kwargs: Any) -> Any:
            if attr is not value:  # never shared; the hot path (every published value) pays one comparison
                unshare(nodeid, attr)  # asyncua's own parameter names: keyword callers work too
            return original(nodeid, attr, *args, **kwargs)
        return changing

    for name in _CHANGES:
        setattr(aspace, name, wrap(getattr(aspace, name)))
    aspace._bessgw_unshares = True


class Compactor:
    """Compacts nodes of one server's address space, sharing equal static values across calls."""

    def __init__(self, aspace: Any) -> None:
        self.aspace = aspace
        self._shared: dict[tuple[Any, ...], ua.DataValue] = {}
        self.attributes = 0  #: attributes replaced so far
        self.shared = 0  #: of which now share their DataValue with another node

    def compact(self, nodeids: Iterable[ua.NodeId] | None = None) -> None:
        """Compact ``nodeids`` (all nodes when ``None``); nodes already compacted cost a type check each."""
        get = self.aspace.get
        for nodeid in list(self.aspace.keys()) if nodeids is None else nodeids:
            node = get(nodeid)
            if node is not None:
                self._compact_node(node)
        if len(self._shared) > MAX_SHARED_VALUES:
            self._shared.clear()

    def _compact_node(self, node: Any) -> None:
        attributes = node.attributes
        for attribute_id, attribute in attributes.items():
            if type(attribute) in _COMPACT:
                continue
            if attribute.value_callback is not None or attribute.value_setter is not None \
                    or attribute.datachange_callbacks:
                continue  # someone reads through a callback, or watches it: leave it exactly as it is
            slim = SlimAttribute(self._share(attribute_id, attribute.value))
            attributes[attribute_id] = slim
            self.attributes += 1

    def _share(self, attribute_id: ua.AttributeIds, datavalue: ua.DataValue | None) -> ua.DataValue | None:
        if datavalue is None or attribute_id == ua.AttributeIds.NodeId:
            return datavalue  # a NodeId is unique by definition: sharing would only cost a table entry
        if datavalue.SourceTimestamp is not None or datavalue.ServerTimestamp is not None:
            return datavalue  # a live value (or one that says when it was set): its own
        variant = datavalue.Value
        status = datavalue.StatusCode.value if datavalue.StatusCode is not None else None
        if variant is None:
            key: tuple[Any, ...] = (None, status)
        else:
            value = variant.Value
            if type(value) is ua.LocalizedText:  # most common by far (DisplayName, Description): no repr
                value = (value.Locale, value.Text)
            elif type(value) is ua.QualifiedName:
                value = (value.NamespaceIndex, value.Name)
            elif isinstance(value, list):
                value = (list, *((type(item), item) for item in value))
            key = (variant.VariantType, type(variant.Value), value, variant.is_array, variant.Dimensions and
                   tuple(variant.Dimensions), status, datavalue.SourcePicoseconds, datavalue.ServerPicoseconds)
        try:
            shared = self._shared.setdefault(key, datavalue)
        except TypeError:  # a structure (LocalizedText, Argument, ...): its repr names the type and every field
            shared = self._shared.setdefault((*key[:2], repr(key[2]), *key[3:]), datavalue)
        if shared is not datavalue:
            self.shared += 1
        return shared
