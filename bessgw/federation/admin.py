"""How ``bessgw members`` prints the membership table (the request itself goes through the gateway's
admin socket, :mod:`bessgw.daemon.admin`)."""

from __future__ import annotations

from typing import Any


def format_members(rows: list[dict[str, Any]]) -> str:
    """The human table printed by ``bessgw members``."""
    header = f"{'GATEWAY':<24} {'ADDRESS':<22} {'STATUS':<8} {'INC':>6} {'FOR':>8} {'UNITS':>5}"
    lines = [header]
    for row in rows:
        name = row["gateway_id"] + (" *" if row["local"] else "")
        lines.append(f"{name:<24} {row['address']:<22} {row['status']:<8} {row['incarnation']:>6} "
                     f"{row['in_status_s']:>7.0f}s {row['units']:>5}")
    return "\n".join(lines)
