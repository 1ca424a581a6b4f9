"""Wire versions: range negotiation, the field policy of each version, what a peer's range is bound to."""

from __future__ import annotations

import pytest

from bessgw.federation.crypto import FORMAT, KeyRing, version_of
from bessgw.federation.errors import DatagramError
from bessgw.federation.versions import PeerVersions
from bessgw.federation.view import UnitSummary, check_value_version
from bessgw.federation.wire import (
    OURS,
    WIRE_CURRENT,
    WIRE_MIN,
    Entry,
    Header,
    MemberUpdate,
    Message,
    MsgType,
    Status,
    VersionRange,
    decode,
    decode_preamble,
    decode_versioned,
    encode,
    pack,
)
from bessgw.model import Quality, UnitState

HEADER = Header("gw1", 10, 1, "gw2", 20)
MEMBER = MemberUpdate("gw3", "127.0.0.1", 7946, 4, Status.ALIVE, "", 30)


def reason(call) -> str:
    with pytest.raises(DatagramError) as info:
        call()
    return info.value.reason


@pytest.mark.parametrize(("ours", "peer", "expected"), [
    ((2, 3, 3), (2, 2, 2), 2),  # release 0.2.0: the highest it reads
    ((2, 3, 3), (2, 3, 3), 3),  # this release
    ((2, 3, 3), (3, 4, 4), 3),  # the next release: our current, which it still reads
    ((2, 3, 4), (2, 4, 4), 3),  # we read 4 but do not write it yet: our current
    ((2, 4, 4), (2, 3, 3), 3),  # a newer node writes down to what we read
    ((2, 3, 3), (4, 4, 5), None),  # ranges apart: incompatible
    ((3, 3, 3), (2, 2, 2), None),  # a release that dropped version 2 and release 0.2.0
])
def test_the_version_written_is_the_highest_up_to_our_current_that_the_peer_reads(
        ours: tuple[int, int, int], peer: tuple[int, int, int], expected: int | None) -> None:
    assert VersionRange(*ours).version_for(VersionRange(*peer)) == expected
    assert VersionRange(*ours).compatible(VersionRange(*peer)) == (expected is not None)


def test_a_version_range_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="min <= current <= max"):
        VersionRange(3, 2, 4)
    assert str(VersionRange(2, 3, 3)) == "2..3" and str(VersionRange(2, 2, 2)) == "2"


def test_version_2_is_release_0_2_0s_envelope_byte_for_byte() -> None:
    """What an old gateway reads: six elements, no range; and its strict body (unknown keys refused)."""
    msg = Message(MsgType.GOSSIP, members=(MEMBER,))
    data = encode(HEADER, msg, 2)
    assert data == pack(["gw1", 10, 1, "gw2", 20, {"t": int(MsgType.GOSSIP), "m": [MEMBER.to_wire()]}])
    assert decode(data, 2) == (HEADER, msg)
    extra = pack(["gw1", 10, 1, "gw2", 20, {"t": 10, "zz": 1}])
    assert reason(lambda: decode(extra, 2)) == "invalid"
    long_member = pack(["gw1", 10, 1, "gw2", 20, {"t": 10, "m": [[*MEMBER.to_wire(), "later"]]}])
    assert reason(lambda: decode(long_member, 2)) == "invalid"


def test_version_3_carries_the_senders_range_and_reads_through_optional_fields() -> None:
    msg = Message(MsgType.GOSSIP, members=(MEMBER,), entries=(Entry("gw3", 30, 2, "unit/u1", {"soc": 50.0}),))
    data = encode(HEADER, msg, 3, VersionRange(2, 3, 4))
    assert decode_versioned(data, 3) == (HEADER, VersionRange(2, 3, 4), msg)
    # a later release adds an optional body key and trailing fields to arrays: ignored
    later = pack(["gw1", 10, 1, "gw2", 20, [2, 4, 4], {
        "t": int(MsgType.GOSSIP), "m": [[*MEMBER.to_wire(), "zone-a"]], "d": [["gw3", 30, 2, "unit/u1", None, 7]],
        "later": {"x": 1}}, "trailer"])
    header, speaks, parsed = decode_versioned(later, 3)
    assert (header, speaks, parsed.members) == (HEADER, VersionRange(2, 4, 4), (MEMBER,))
    assert parsed.entries == (Entry("gw3", 30, 2, "unit/u1", None),)
    # ... but a required one ("!" prefix) is refused with its own counted reason
    required = pack(["gw1", 10, 1, "gw2", 20, [2, 4, 4], {"t": int(MsgType.PING), "!fence": 3}])
    assert reason(lambda: decode(required, 3)) == "required_field"
    # missing known fields are still invalid
    short = pack(["gw1", 10, 1, "gw2", 20, [2, 3, 3], {"t": 10, "m": [MEMBER.to_wire()[:6]]}])
    assert reason(lambda: decode(short, 3)) == "invalid"
    no_range = pack(["gw1", 10, 1, "gw2", 20, {"t": 10}])
    assert reason(lambda: decode(no_range, 3)) == "invalid"
    bad_range = pack(["gw1", 10, 1, "gw2", 20, [3, 2, 4], {"t": 10}])
    assert reason(lambda: decode(bad_range, 3)) == "invalid"


def test_the_preamble_of_a_later_version_says_who_sent_it_without_reading_the_body() -> None:
    future = pack(["gw9", 11, 5, "gw2", 20, [5, 5, 6], ["a", "body", "we", "cannot", "read"]])
    assert decode_preamble(future) == (Header("gw9", 11, 5, "gw2", 20), VersionRange(5, 5, 6))
    assert reason(lambda: decode_preamble(pack(["gw9", 11, 5, "gw2", 20, {"t": 1}]))) == "invalid"
    assert reason(lambda: decode_preamble(b"\xc1")) == "malformed"


def test_the_format_byte_names_the_version_and_is_authenticated() -> None:
    ring = KeyRing([bytes(32)])
    assert ring.seal(b"x")[0] == FORMAT == 0xB2  # version 2 as release 0.2.0 sealed it
    sealed = ring.seal(b"x", 3)
    assert sealed[0] == 0xB3 and version_of(sealed) == 3 and ring.open(sealed) == b"x"
    relabelled = bytes([0xB2]) + sealed[1:]
    assert reason(lambda: ring.open(relabelled)) == "auth"
    assert version_of(b"\xb1") is None and version_of(b"\xc0") is None and version_of(b"") is None
    with pytest.raises(ValueError):
        ring.seal(b"x", 16)


def test_a_peers_range_belongs_to_one_life_of_it() -> None:
    now = [0.0]
    peers = PeerVersions(OURS, lambda: now[0])
    assert peers.version_for("gw2") == WIRE_MIN  # never told: written to as release 0.2.0
    assert not peers.learn("gw2", 100, OURS, "127.0.0.1:1")
    assert peers.version_for("gw2", 100) == WIRE_CURRENT
    assert not peers.learn("gw2", 99, VersionRange(9, 9, 9))  # an earlier life's (late) word changes nothing
    assert peers.version_for("gw2", 100) == WIRE_CURRENT
    # it restarted (perhaps downgraded): until the new life says what it speaks, back to our minimum
    assert peers.version_for("gw2", 101) == WIRE_MIN and not peers.incompatible("gw2", 101)
    assert peers.learn("gw2", 101, VersionRange(9, 9, 9))  # now incompatible (True: just became so)
    assert not peers.learn("gw2", 101, VersionRange(9, 9, 9))  # still; not news
    assert peers.incompatible("gw2", 101) and peers.version_for("gw2", 101) is None
    assert [p.node for p in peers.incompatible_peers(lambda node: 101)] == ["gw2"]
    assert peers.incompatible_peers(lambda node: 102) == []  # a newer life: not known to be incompatible
    assert not peers.learn("gw2", 102, OURS) and not peers.incompatible("gw2", 102)


def summary_value(**changes: object) -> dict[str, object]:
    good = UnitSummary("u1", UnitState.RUNNING, Quality.GOOD, 50.0, 0.0, 100.0, 100.0, 200.0, 1.0e9)
    return {**good.to_value(), **changes}


def test_replicated_values_carry_their_version_and_follow_the_same_policy() -> None:
    assert summary_value()["v"] == WIRE_CURRENT
    assert UnitSummary.from_value("u1", summary_value()).soc_pct == 50.0
    old = summary_value()
    del old["v"]  # release 0.2.0 wrote no version: it is 2
    assert check_value_version(old) == 2 and UnitSummary.from_value("u1", old).soc_pct == 50.0
    assert UnitSummary.from_value("u1", summary_value(later_field=[1, 2])).soc_pct == 50.0  # optional: ignored
    for bad in (summary_value(v=WIRE_CURRENT + 1), summary_value(v=1), summary_value(v="3"),
                summary_value(**{"!fence": 1})):
        with pytest.raises(ValueError):
            UnitSummary.from_value("u1", bad)
