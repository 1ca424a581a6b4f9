"""Who may do what over OPC UA: users from config, roles, and the per-request permission check.

Roles are cumulative: a viewer reads, browses and subscribes; an operator also calls ``SetPower`` and
writes setpoints; an admin also resets faults. Nobody may edit the address space over the network
(asyncua's own "Admin" role would allow AddNodes/DeleteNodes, so it is never handed out). Anonymous
sessions, when allowed at all, get viewer rights.

asyncua does not pass the session's user to method callbacks, so the permission check — which runs in
the connection's task right before the request is served — records the user in a context variable
that the method and write handlers of this package read (:func:`current_role`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from asyncua import ua
from asyncua.crypto.permission_rules import PermissionRuleset, User, UserRole

from bessgw.config import OpcUaUser
from bessgw.northbound.passwords import verify_password


class Role(IntEnum):
    """Cumulative rights; compare with ``>=``."""

    NONE = 0
    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3


@dataclass
class GatewayUser(User):
    """An asyncua user carrying our role (asyncua's ``role`` stays ``User``/``Anonymous``)."""

    access: Role = Role.NONE


_current_user: contextvars.ContextVar[GatewayUser | None] = contextvars.ContextVar("bessgw_opcua_user",
                                                                                   default=None)


def current_role() -> Role:
    """The role of the session whose request is being served (``NONE`` outside a request)."""
    user = _current_user.get()
    return user.access if user is not None else Role.NONE


def current_user_name() -> str:
    user = _current_user.get()
    return (user.name or "anonymous") if user is not None else ""


class UserDirectory:
    """asyncua user manager: password logins from config, and anonymous as configured.

    Returning ``None`` makes asyncua refuse the session activation with ``BadUserAccessDenied``.
    """

    def __init__(self, users: Iterable[OpcUaUser], anonymous: str,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self._users = {user.name: user for user in users}
        self._anonymous = anonymous == "read"
        self._on_failure = on_failure
        self.failures = 0

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> GatewayUser | None:
        if username is None and password is None:
            if self._anonymous:
                return GatewayUser(role=UserRole.Anonymous, name=None, access=Role.VIEWER)
            return self._fail("anonymous")
        entry = self._users.get(username or "")
        if entry is None or not verify_password(password or "", entry.password_hash):
            return self._fail(username or "")
        return GatewayUser(role=UserRole.User, name=entry.name, access=Role[entry.role.upper()])

    def claims_operator(self, params: Any) -> bool:
        """Whether an ActivateSession request logs in as a configured operator or admin (not yet verified)."""
        token = getattr(params, "UserIdentityToken", None)
        entry = self._users.get(getattr(token, "UserName", None) or "") if isinstance(
            token, ua.UserNameIdentityToken) else None
        return entry is not None and Role[entry.role.upper()] >= Role.OPERATOR

    def _fail(self, who: str) -> None:
        self.failures += 1
        if self._on_failure is not None:
            self._on_failure(who)
        return None


def _ids(*names: str) -> frozenset[ua.NodeId]:
    return frozenset(ua.NodeId(getattr(ua.ObjectIds, f"{name}Request_Encoding_DefaultBinary")) for name in names)


#: services every logged-in role may use: reading, browsing, subscriptions, and session housekeeping
_VIEWER_SERVICES = _ids(
    "CreateSession", "CloseSession", "ActivateSession", "GetEndpoints", "FindServers", "CloseSecureChannel",
    "Read", "Browse", "TranslateBrowsePathsToNodeIds", "RegisterNodes", "UnregisterNodes",
    "CreateSubscription", "ModifySubscription", "DeleteSubscriptions", "TransferSubscriptions",
    "CreateMonitoredItems", "ModifyMonitoredItems", "DeleteMonitoredItems", "SetMonitoringMode",
    "SetPublishingMode", "Publish", "Republish", "HistoryRead",
    # methods are checked per method by the handler (SetPower: operator, ResetFault: admin), and writes
    # per item by the server (viewers may write nothing), so that a viewer gets BadUserAccessDenied for
    # the method or the item it asked for rather than a ServiceFault for the whole request — a SCADA
    # batch with one forbidden item still gets the others done
    "Call", "Write",
)
_OPERATOR_SERVICES = _VIEWER_SERVICES

#: the AccessLevel bits that allow changing something (Part 3, AccessLevelType)
_WRITE_BITS = (ua.AccessLevel.CurrentWrite, ua.AccessLevel.HistoryWrite, ua.AccessLevel.StatusWrite,
               ua.AccessLevel.TimestampWrite)


def may_write(role: Role) -> bool:
    """Whether a session of ``role`` may write variables at all (setpoints; nothing else is writable)."""
    return role >= Role.OPERATOR


def user_may_write(user: Any) -> bool:
    """:func:`may_write` for the user asyncua passes to its write service.

    ``None`` or asyncua's Admin role is the server's own internal session (building the address space),
    never a network client: sessions of ours are :class:`GatewayUser` with asyncua's User/Anonymous role.
    """
    if user is None or getattr(user, "role", None) == UserRole.Admin:
        return True
    return isinstance(user, GatewayUser) and may_write(user.access)


def user_access_level(access_level: int, role: Role) -> int:
    """The node's ``AccessLevel`` as a session of ``role`` may use it (its ``UserAccessLevel``)."""
    if may_write(role):
        return access_level
    for bit in _WRITE_BITS:
        access_level &= ~(1 << bit)
    return access_level


class RolePermissions(PermissionRuleset):
    """asyncua permission ruleset keyed on our roles; also records the user for the handlers."""

    def check_validity(self, user: Any, action_type_id: ua.NodeId, body: Any) -> bool:
        gateway_user = user if isinstance(user, GatewayUser) else None
        _current_user.set(gateway_user)
        role = gateway_user.access if gateway_user is not None else Role.NONE
        if role >= Role.OPERATOR:
            return action_type_id in _OPERATOR_SERVICES
        if role >= Role.VIEWER:
            return action_type_id in _VIEWER_SERVICES
        return False
