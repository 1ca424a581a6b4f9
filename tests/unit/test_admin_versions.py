"""The admin protocol's version rules, as the client applies them to a gateway's reply."""

from __future__ import annotations

import pytest

from bessgw.daemon.admin import ADMIN_CURRENT, ADMIN_MAX, AdminError, negotiate, reply_version


def test_a_reply_without_a_version_is_release_0_2_0s_and_readable() -> None:
    assert reply_version({"ok": True}) == 1
    assert reply_version({"ok": True, "v": ADMIN_CURRENT}) == ADMIN_CURRENT


@pytest.mark.parametrize("version", [ADMIN_MAX + 1, 0, "2", True, None])
def test_a_reply_this_client_cannot_read_is_an_error_naming_both_sides(version: object) -> None:
    with pytest.raises(AdminError, match="use the command of the gateway's release") as info:
        reply_version({"ok": True, "v": version, "release": "9.0.0"})
    assert info.value.exit_code == 70 and "9.0.0" in str(info.value)


def test_negotiation_picks_the_highest_version_both_read() -> None:
    assert negotiate({"cmd": "status"}) == 1
    assert negotiate({"cmd": "status", "v": ADMIN_CURRENT, "vmin": 1}) == ADMIN_CURRENT
    assert negotiate({"cmd": "status", "v": ADMIN_MAX + 5, "vmin": 1}) == ADMIN_CURRENT
    with pytest.raises(AdminError, match="speaks admin protocol"):
        negotiate({"cmd": "status", "v": ADMIN_MAX + 5, "vmin": ADMIN_MAX + 1})
