"""The wire format: what is encoded decodes to the same message; anything else is a counted reason."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bessgw.federation.errors import DatagramError
from bessgw.federation.wire import (
    DeltaPart,
    DigestItem,
    Entry,
    Header,
    MemberUpdate,
    Message,
    MsgType,
    Status,
    decode,
    encode,
)

ids = st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=20)
uints = st.integers(0, 2**63 - 1)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                    st.floats(allow_nan=False), st.text(max_size=20))
values = st.one_of(st.none(), st.dictionaries(st.text(max_size=10), st.one_of(scalars, st.lists(scalars, max_size=3)),
                                              max_size=5))
members = st.builds(MemberUpdate, ids, st.just("127.0.0.1"), st.integers(1, 65535), uints,
                    st.sampled_from(Status), st.one_of(st.just(""), ids), uints)
entries = st.builds(Entry, ids, uints, uints, ids, values)
digests = st.builds(DigestItem, ids, uints, uints)
deltas = st.builds(
    lambda owner, gen, base, extra, items: DeltaPart(owner, gen, base, base + extra, tuple(items)),
    ids, uints, st.integers(0, 2**40), st.integers(0, 2**20),
    st.lists(st.tuples(ids, uints, values), max_size=4),
)
messages = st.builds(
    Message, st.sampled_from(MsgType), uints, st.one_of(st.just(""), ids),
    st.one_of(st.none(), st.tuples(st.just("10.0.0.1"), st.integers(1, 65535))), st.booleans(), st.booleans(),
    st.binary(max_size=16), st.binary(max_size=16),
    st.lists(members, max_size=4).map(tuple), st.lists(entries, max_size=4).map(tuple),
    st.lists(members, max_size=4).map(tuple), st.lists(digests, max_size=4).map(tuple),
    st.lists(deltas, max_size=3).map(tuple),
)


receivers = st.one_of(st.just(("", 0)), st.tuples(ids, uints))


@given(messages, ids, uints, uints, receivers)
@settings(max_examples=200, deadline=None)
def test_round_trip(msg: Message, sender: str, boot: int, seq: int, receiver: tuple[str, int]) -> None:
    header = Header(sender, boot, seq, *receiver)
    assert decode(encode(header, msg)) == (header, msg)


def test_the_envelope_names_sender_and_receiver_lives_in_this_order() -> None:
    """Wire format 2, pinned: [sender, boot, seq, to, to_boot, body] and 7-field member updates."""
    msg = Message(MsgType.GOSSIP, members=(MemberUpdate("c", "10.0.0.3", 7946, 4, Status.SUSPECT, "a", 77),))
    raw = msgpack.unpackb(encode(Header("a", 11, 12, "b", 13), msg))
    assert raw == ["a", 11, 12, "b", 13, {"t": 10, "m": [["c", "10.0.0.3", 7946, 4, 1, "a", 77]]}]
    assert decode(msgpack.packb(["a", 1, 2, "", 0, {"t": 11}]))[0] == Header("a", 1, 2, "", 0)


@pytest.mark.parametrize(
    ("envelope", "why"),
    [
        (["a", 1, 1, 1, {"t": 1}], "envelope"),  # format 1's [sender, boot, seq, age_s, body]
        (["a", 1, 1, "", 5, {"t": 1}], "to_boot without to"),
        (["a", 1, 1, "x" * 65, 5, {"t": 1}], "to"),
        (["a", 1, 1, "b", -1, {"t": 1}], "to_boot"),
    ],
)
def test_invalid_envelopes_are_named(envelope: list, why: str) -> None:
    with pytest.raises(DatagramError) as info:
        decode(msgpack.packb(envelope))
    assert info.value.reason == "invalid"
    assert why in info.value.detail


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_random_bytes_are_dropped_with_a_reason(data: bytes) -> None:
    try:
        decode(data)
    except DatagramError as err:
        assert err.reason in ("malformed", "invalid")


@given(st.recursive(scalars | st.binary(max_size=8), lambda inner: st.lists(inner, max_size=5)
                    | st.dictionaries(st.text(max_size=4), inner, max_size=5), max_leaves=20)
       .filter(lambda obj: not (isinstance(obj, dict) and "t" in obj)))  # a map with a type could be valid
@settings(max_examples=300, deadline=None)
def test_well_formed_msgpack_of_the_wrong_shape_is_invalid(obj: object) -> None:
    with pytest.raises(DatagramError) as info:
        decode(msgpack.packb(["a", 1, 1, "b", 1, obj], use_bin_type=True))
    assert info.value.reason in ("invalid", "malformed")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"t": 99}, "99"),
        ({"t": 1, "zz": 1}, "unknown body keys"),
        ({"t": 1, "q": -1}, "q"),
        ({"t": 1, "m": [["n", "h", 70000, 0, 0, "", 1]]}, "port"),
        ({"t": 1, "m": [["n", "h", 1, 0, 7, "", 1]]}, "7"),
        ({"t": 1, "m": [["n", "h", 1, 0, 0, ""]]}, "7 fields"),
        ({"t": 1, "m": [["n", "h", 1, 0, 0, "", -3]]}, "boot"),
        ({"t": 8, "dp": [["o", 1, 5, 4, []]]}, "upto below base"),
        ({"t": 1, "d": [["o", 1, 1, "k", {"x": {"nested": 1}}]]}, "scalar"),
        ({"t": 1, "tg": "x" * 65}, "target"),
    ],
)
def test_invalid_fields_are_named(body: dict, why: str) -> None:
    with pytest.raises(DatagramError) as info:
        decode(msgpack.packb(["a", 1, 1, "b", 1, body], use_bin_type=True))
    assert info.value.reason == "invalid"
    assert why in info.value.detail


def test_oversized_containers_are_malformed_not_expensive() -> None:
    with pytest.raises(DatagramError) as info:
        decode(msgpack.packb(["a", 1, 1, "b", 1, {"t": 1, "m": [0] * 5000}]))
    assert info.value.reason == "malformed"
