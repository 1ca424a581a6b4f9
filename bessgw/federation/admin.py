"""How ``bessgw members`` prints the membership table (the request itself goes through the gateway's
admin socket, :mod:`bessgw.daemon.admin`)."""

from __future__ import annotations

from typing import Any


def format_members(rows: list[dict[str, Any]]) -> str:
    """The human table printed by ``bessgw members``.

    ``WIRE`` is the range of wire versions each gateway told us it speaks (empty for a gateway of release
    0.2.0, which does not say; a gateway of that release answers rows without the field at all).
    """
    names = [row["gateway_id"] + (" *" if row["local"] else "") for row in rows]
    name_w = max([24, *map(len, names)])  # as wide as the longest gateway id
    address_w = max([22, *(len(row["address"]) for row in rows)])
    status_w = max([8, *(len(row["status"]) for row in rows)])
    header = (f"{'GATEWAY':<{name_w}} {'ADDRESS':<{address_w}} {'STATUS':<{status_w}} {'INC':>6} {'FOR':>8} "
              f"{'UNITS':>5} {'WIRE':<6}")
    lines = [header]
    for name, row in zip(names, rows, strict=True):
        lines.append(f"{name:<{name_w}} {row['address']:<{address_w}} {row['status']:<{status_w}} "
                     f"{row['incarnation']:>6} {row['in_status_s']:>7.0f}s {row['units']:>5} "
                     f"{row.get('speaks') or '-':<6}".rstrip())
    return "\n".join(lines)
