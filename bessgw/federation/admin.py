"""How ``bessgw members`` prints the membership table (the request itself goes through the gateway's
admin socket, :mod:`bessgw.daemon.admin`)."""

from __future__ import annotations

from typing import Any


def format_members(rows: list[dict[str, Any]]) -> str:
    """The human table printed by ``bessgw members``."""
    names = [row["gateway_id"] + (" *" if row["local"] else "") for row in rows]
    name_w = max([24, *map(len, names)])  # as wide as the longest gateway id
    address_w = max([22, *(len(row["address"]) for row in rows)])
    header = f"{'GATEWAY':<{name_w}} {'ADDRESS':<{address_w}} {'STATUS':<8} {'INC':>6} {'FOR':>8} {'UNITS':>5}"
    lines = [header]
    for name, row in zip(names, rows, strict=True):
        lines.append(f"{name:<{name_w}} {row['address']:<{address_w}} {row['status']:<8} {row['incarnation']:>6} "
                     f"{row['in_status_s']:>7.0f}s {row['units']:>5}")
    return "\n".join(lines)
