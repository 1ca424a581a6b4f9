"""The northbound OPC UA server: one root task of the daemon, serving until cancelled.

It builds the address space from :mod:`information_model`, keeps it in step with the unit directory
(nodes appear and disappear as config reloads add and remove units), publishes values through
:mod:`publisher`, and routes SetPower calls and setpoint writes to :mod:`methods`. Security — endpoints,
certificates, trust list, users and roles — is set up here from :mod:`certificates` and :mod:`access`.
With a ``campus`` provider (the federation's campus view), :mod:`campus` mirrors the peers' gateways and
units and the campus aggregate into ``Objects/Campus``.

asyncua is an implementation detail: nothing of it leaves this package.
"""

from __future__ import annotations

import asyncio
import gc
import math
import socket
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from asyncua import Node, Server, ua
from asyncua.common.utils import ServiceError

from bessgw.compat import TaskGroup
from bessgw.config import OpcUaSettings
from bessgw.errors import BessgwError, ConfigError
from bessgw.northbound import information_model as model
from bessgw.northbound import operation_limits, service_faults, standard_nodes
from bessgw.northbound.access import (
    RolePermissions,
    UserDirectory,
    current_role,
    current_user_name,
    user_access_level,
    user_may_write,
)
from bessgw.northbound.campus import CampusMirror, CampusProvider
from bessgw.northbound.certificates import CertificateFiles, TrustList, ensure_certificate
from bessgw.northbound.compaction import Compactor
from bessgw.northbound.connections import ConnectionGuard, ConnectionLimits, current_channel_unsecured
from bessgw.northbound.events import AlarmEvents
from bessgw.northbound.method_arguments import Refused, called_on, set_power_arguments
from bessgw.northbound.methods import Applied, CommandHandler, CommandRejected, ControlProvider
from bessgw.northbound.publisher import DEADBAND_NAMES, Publisher
from bessgw.plugin.roles import Logger
from bessgw.unit.directory import UnitDirectory
from bessgw.unit.supervisor import UnitSupervisor

if TYPE_CHECKING:  # campus dispatch pulls in the etcd client (grpc, protobuf: ~17 MB): only when configured
    from bessgw.campus.commands import CampusCommands
    from bessgw.northbound.campus_methods import CampusDispatchNodes

#: bound on asyncua's shutdown (it closes every client connection)
STOP_TIMEOUT_S = 3.0
#: units are added to the address space in slices of about this long, yielding to the event loop between
#: them: a unit takes ~1-3 ms (stamped), while one turn of a busy loop (1,000 units polled at 10 Hz) takes
#: tens of ms, so yielding after every unit made the start last units × turn (~50 s at 1,000 units)
ADD_UNITS_SLICE_S = 0.01

_POLICIES = {
    "Basic256Sha256_SignAndEncrypt": ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    "Basic256Sha256_Sign": ua.SecurityPolicyType.Basic256Sha256_Sign,
    "None": ua.SecurityPolicyType.NoSecurity,
}


class OpcUaServerError(BessgwError):
    """The OPC UA server cannot start (e.g. its port is taken)."""


def settings_problems(settings: OpcUaSettings) -> list[str]:
    """What the config layer cannot check alone: deadbands of variables the address space does not have.

    Asked by ``check-config``, before a start and before a reload is accepted (a reload that stopped the
    server and then failed to build the new one would leave SCADA without OPC UA over a typo).
    """
    unknown = sorted(set(settings.deadbands) - DEADBAND_NAMES)
    if not unknown:
        return []
    return [f"northbound.opcua.deadbands: unknown variable(s) {', '.join(name[:40] for name in unknown[:10])}"
            f" (numeric variables: {', '.join(sorted(DEADBAND_NAMES))})"]


class OpcUaServer:
    """Serves the gateway's address space at ``settings.endpoint``."""

    def __init__(self, settings: OpcUaSettings, gateway_id: str, directory: UnitDirectory, state_dir: Path,
                 log: Logger, control: ControlProvider | None = None, campus: CampusProvider | None = None,
                 campus_commands: CampusCommands | None = None) -> None:
        problems = settings_problems(settings)
        if problems:
            raise ConfigError("northbound.opcua.deadbands", problems)
        self.settings = settings
        self.gateway_id = gateway_id
        self.directory = directory
        self.state_dir = state_dir
        self.log = log
        self.pki_dir = settings.pki_dir or state_dir / "pki"
        self.campus = campus  #: the federation's campus view (peers and aggregate), when given
        self.campus_mirror: CampusMirror | None = None
        self.campus_commands = campus_commands  #: campus dispatch (Campus/SetPower and its status), when given
        self.campus_dispatch: CampusDispatchNodes | None = None
        self.commands = CommandHandler(directory, settings.command_timeout_s, on_applied=self._on_applied,
                                       control=control)
        self.started = asyncio.Event()
        self.endpoint_url = settings.endpoint
        self.trust_list: TrustList | None = None
        self.publisher: Publisher | None = None
        self._server: Server | None = None
        self._compactor: Compactor | None = None
        self._types: model.Types | None = None
        self._gateway: model.Instance | None = None
        self._units: dict[str, model.Instance] = {}
        self._setpoint_nodes: dict[ua.NodeId, tuple[str, str]] = {}
        self._applied: dict[str, tuple[float, float]] = {}  #: last accepted (p_kw, q_kvar) per unit
        self._changes: asyncio.Queue[tuple[str, UnitSupervisor | None]] = asyncio.Queue()
        self._pending_writes: set[asyncio.Task[None]] = set()
        self._subscribed = False
        self._running = False

    # ------------------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Serve until cancelled; asyncua is stopped within :data:`STOP_TIMEOUT_S` on the way out."""
        self._units.clear()  # run() may be called again after a failure (the daemon retries services)
        self._setpoint_nodes.clear()
        while not self._changes.empty():
            self._changes.get_nowait()
        server = await self._build()
        self._server = server
        if not self._subscribed:
            self.directory.subscribe(self._directory_changed)
            self._subscribed = True
        try:
            await server.start()
        except OSError as err:
            raise OpcUaServerError(f"cannot listen on {self.settings.endpoint}: {err}") from err
        self._running = True
        try:
            self._resolve_endpoint(server)
            loop = asyncio.get_running_loop()
            turn_ends = loop.time() + ADD_UNITS_SLICE_S
            for supervisor in self.directory:
                await self._add_unit(supervisor)
                if loop.time() >= turn_ends:  # let the poll loops run between slices of node creation
                    await asyncio.sleep(0)
                    turn_ends = loop.time() + ADD_UNITS_SLICE_S
            assert self.publisher is not None
            await self.publisher.publish_once()  # "started" means serving with the values known now
            _freeze_built_objects()
            self.started.set()
            self.log.info("opcua_started", endpoint=self.endpoint_url, policies=self.settings.security_policies,
                          anonymous=self.settings.anonymous, users=len(self.settings.users), pki=str(self.pki_dir))
            async with TaskGroup() as group:
                group.create_task(self.publisher.run(), name="opcua:publisher")
                group.create_task(self._follow_directory(), name="opcua:directory")
                if self.campus_mirror is not None:
                    group.create_task(self.campus_mirror.run(), name="opcua:campus")
                if self.campus_dispatch is not None:
                    group.create_task(self.campus_dispatch.run(), name="opcua:campus-dispatch")
        finally:
            self._running = False
            self.started.clear()
            try:
                await asyncio.wait_for(server.stop(), STOP_TIMEOUT_S)
            except (asyncio.TimeoutError, OSError) as err:
                self.log.warning("opcua_stop_incomplete", error=repr(err))
            self.log.info("opcua_stopped")

    async def _build(self) -> Server:
        settings = self.settings
        users = UserDirectory(settings.users, settings.anonymous,
                              on_failure=lambda who: self.log.warning("opcua_login_refused", user=who))
        server = Server(user_manager=users)
        self._serve_standard_nodes_from_shelf(server)
        await server.init()
        server.set_endpoint(settings.endpoint)
        server.set_server_name(f"bessgw {self.gateway_id}")
        application_uri = f"urn:bessgw:{self.gateway_id}"
        await server.set_application_uri(application_uri)
        server.product_uri = "urn:bessgw"
        await self._load_certificate(server, application_uri)
        server.set_security_policy([_POLICIES[name] for name in settings.security_policies],
                                   permission_ruleset=RolePermissions())
        tokens: list[type] = [ua.UserNameIdentityToken]
        if settings.anonymous == "read":
            tokens.append(ua.AnonymousIdentityToken)
        server.set_identity_tokens(tokens)
        self.trust_list = TrustList(self.pki_dir, on_rejected=self._certificate_rejected)
        server.set_certificate_validator(self._validate_certificate)
        iserver = server.iserver
        self.connections = ConnectionGuard(ConnectionLimits(
            max_sessions=settings.max_sessions, max_pending=settings.max_pending_connections,
            max_pending_per_address=settings.max_pending_connections_per_address,
            handshake_timeout_s=settings.handshake_timeout_s, activation_timeout_s=settings.activation_timeout_s,
            reserved_for_operators=settings.max_sessions // 4,
        ), log=self.log.warning, privileged=users.claims_operator)
        self.connections.install(iserver)
        operation_limits.install(iserver, settings.sampling_interval_s * 1000.0)
        operation_limits.limit_message_size(server)
        self.service_faults = service_faults.install()
        await operation_limits.advertise(server, settings.max_sessions)
        iserver.max_session_timeout_ms = settings.session_idle_timeout_s * 1000.0
        iserver.min_session_timeout_ms = min(iserver.min_session_timeout_ms, iserver.max_session_timeout_ms)
        iserver.max_subscriptions = settings.max_sessions * settings.max_subscriptions_per_session
        self._limit_subscriptions_per_session(server)
        self._intercept_setpoint_writes(server)
        self._show_access_levels_per_user(server)
        self._types = await model.create_types(server)
        self._gateway = await model.create_gateway(server, self._types, self.gateway_id)
        server.link_method(server.get_node(self._gateway.child("SetPower")), self._gateway_set_power)
        self.alarm_events = AlarmEvents()
        await self.alarm_events.setup(server, self._types.ns, self._gateway.node.nodeid)
        self.publisher = Publisher(server, settings.sampling_interval_s, settings.deadbands,
                                   settings.default_deadband, on_alarms=self.alarm_events.changed)
        self.publisher.set_gateway(self._gateway, self.gateway_id)
        self.campus_dispatch = None
        if self.campus_commands is not None:
            from bessgw.northbound.campus_methods import CampusDispatchNodes

            self.campus_dispatch = await CampusDispatchNodes.create(server, self._types, self.campus_commands,
                                                                    settings.sampling_interval_s, self.log)
        self.campus_mirror = None
        if self.campus is not None:
            await model.create_campus_types(server, self._types)
            self.campus_mirror = CampusMirror(server, self._types, self.publisher, self.campus,
                                              settings.sampling_interval_s, self.log)
        self._compactor = Compactor(server.iserver.aspace)
        self._compactor.compact()  # the standard address space and our types: ~40 % of their memory
        return server

    def _serve_standard_nodes_from_shelf(self, server: Server) -> None:
        """Have ``server.init()`` read the standard address space lazily from a shelf in the state dir.

        ~2.5 s and ~40 MB less per start (:mod:`standard_nodes`); with no usable shelf (read-only state
        dir, full disk) the standard nodes are built in memory as asyncua does, after one warning.
        """
        iserver = server.iserver
        build_in_memory = iserver.load_standard_address_space
        state_dir = self.state_dir
        log = self.log

        async def load_standard_address_space(shelf_file: Path | None = None) -> None:
            try:
                key = standard_nodes.ShelfKey.installed()
                path = await standard_nodes.ensure_shelf(
                    state_dir, key, lambda reason: log.info("opcua_standard_nodes_building", reason=reason))
                standard_nodes.load(iserver.aspace, path)
            except Exception as err:  # any failure of the cache: serve from memory instead
                log.warning("opcua_standard_nodes_cache_unusable", error=repr(err), state_dir=str(state_dir))
                await build_in_memory()

        iserver.load_standard_address_space = load_standard_address_space  # type: ignore[method-assign]

    async def _load_certificate(self, server: Server, application_uri: str) -> None:
        settings = self.settings
        if settings.certificate_path is not None and settings.private_key_path is not None:
            files = CertificateFiles(settings.certificate_path, settings.private_key_path)
        else:
            files = ensure_certificate(
                CertificateFiles(self.pki_dir / "own" / "cert.der", self.pki_dir / "own" / "private" / "key.pem"),
                application_uri, f"bessgw {self.gateway_id}",
                hostnames=_hostnames(urlparse(settings.endpoint).hostname or ""),
            )
        try:
            await server.load_certificate(str(files.certificate))
            await server.load_private_key(str(files.private_key))
        except (OSError, ValueError) as err:
            raise ConfigError(str(files.certificate), [
                f"northbound.opcua: cannot load certificate {files.certificate} / key {files.private_key}: {err}"
            ]) from err

    def _resolve_endpoint(self, server: Server) -> None:
        """With port 0 in the endpoint, report the port actually bound."""
        url = urlparse(self.settings.endpoint)
        if url.port == 0 and server.bserver is not None:
            self.endpoint_url = url._replace(netloc=f"{url.hostname}:{server.bserver.port}").geturl()

    # --------------------------------------------------------------------- sessions and limits

    def _limit_subscriptions_per_session(self, server: Server) -> None:
        """asyncua caps subscriptions server-wide only; add the per-session cap in front of it."""
        service = server.iserver.subscription_service
        create = service.create_subscription
        limit = self.settings.max_subscriptions_per_session

        async def create_subscription(params: Any, callback: Any, session_id: Any, request_callback: Any = None):
            mine = sum(1 for sub in service.subscriptions.values() if sub.session_id == session_id)
            if mine >= limit:
                self.log.warning("opcua_subscription_refused", reason="max_subscriptions_per_session", limit=limit)
                raise ServiceError(ua.StatusCodes.BadTooManySubscriptions)
            return await create(params, callback, session_id, request_callback=request_callback)

        service.create_subscription = create_subscription  # type: ignore[method-assign]

    def _intercept_setpoint_writes(self, server: Server) -> None:
        """Route client writes of setpoint variables through the command path (limits, roles, driver).

        asyncua's write service only stores values; a setpoint write has to reach the device and be
        refused with BadOutOfRange when outside the limits, so those nodes are handled here.
        """
        service = server.iserver.attribute_service
        write = service.write

        async def write_with_setpoints(params: ua.WriteParameters, user: Any = None) -> list[ua.StatusCode]:
            results: list[ua.StatusCode] = []
            writer = user_may_write(user)
            for item in params.NodesToWrite:
                if not writer:
                    results.append(ua.StatusCode(ua.StatusCodes.BadUserAccessDenied))
                    continue
                target = self._setpoint_nodes.get(item.NodeId)
                if target is None or item.AttributeId != ua.AttributeIds.Value:
                    sub = ua.WriteParameters(NodesToWrite=[item])
                    results.extend(await write(sub, user=user) if user is not None else await write(sub))
                    continue
                results.append(await self._write_setpoint(target, item.Value))
            return results

        service.write = write_with_setpoints  # type: ignore[method-assign]

    def _show_access_levels_per_user(self, server: Server) -> None:
        """Answer reads of ``UserAccessLevel`` for the session's role, not the node's stored value.

        asyncua stores one UserAccessLevel per node; a viewer or an anonymous session must not see the
        write bit on setpoints whose writes would be refused (clients grey out what they cannot write).
        """
        service = server.iserver.attribute_service
        read = service.read

        def read_for_user(params: ua.ReadParameters) -> list[ua.DataValue]:
            results = read(params)
            role = current_role()
            for index, item in enumerate(params.NodesToRead):
                value = results[index]
                if (item.AttributeId == ua.AttributeIds.UserAccessLevel and value.Value is not None
                        and isinstance(value.Value.Value, int)):
                    level = user_access_level(value.Value.Value, role)
                    if level != value.Value.Value:
                        results[index] = replace(value, Value=ua.Variant(level, ua.VariantType.Byte))
            return results

        service.read = read_for_user  # type: ignore[method-assign]

    async def _write_setpoint(self, target: tuple[str, str], value: ua.DataValue) -> ua.StatusCode:
        unit_id, which = target
        raw = value.Value.Value if value.Value is not None else None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return ua.StatusCode(ua.StatusCodes.BadTypeMismatch)
        if not math.isfinite(raw):
            return ua.StatusCode(ua.StatusCodes.BadOutOfRange)
        p_kw, q_kvar = float(raw), 0.0
        instance = self._units.get(unit_id)
        applied = self._applied.get(unit_id)
        if applied is not None:  # the variables show it a loop turn later: a batch writing P then Q needs it now
            p_kw, q_kvar = (float(raw), applied[1]) if which == "p" else (applied[0], float(raw))
        elif instance is not None and self._server is not None:
            other = "ReactivePowerSetpointKvar" if which == "p" else "PowerSetpointKw"
            current = self._server.read_attribute_value(instance.child(other))
            kept = current.Value.Value if current.Value is not None else None
            kept = float(kept) if isinstance(kept, (int, float)) and current.StatusCode.is_good() else 0.0
            p_kw, q_kvar = (float(raw), kept) if which == "p" else (kept, float(raw))
        try:
            await self.commands.set_unit_power(unit_id, p_kw, q_kvar, "", role=current_role(),
                                               user=current_user_name())
        except CommandRejected as err:
            self.log.warning("opcua_write_refused", unit=unit_id, status=err.status, reason=err.message)
            return ua.StatusCode(getattr(ua.StatusCodes, err.status))
        return ua.StatusCode(ua.StatusCodes.Good)

    async def _validate_certificate(self, certificate: Any, app_description: ua.ApplicationDescription) -> None:
        """The trust list on Sign / SignAndEncrypt channels; nothing on None.

        OPC UA Part 4 (CreateSession) has the server validate the client certificate only when the
        channel is secured; many clients (node-opcua, UaExpert) send theirs on None too, and must still
        be able to browse anonymously there.
        """
        if current_channel_unsecured():
            return
        assert self.trust_list is not None
        await self.trust_list(certificate, app_description)

    def _certificate_rejected(self, file_name: str, reason: str) -> None:
        self.log.warning("opcua_certificate_rejected", certificate=file_name, reason=reason,
                         hint=f"to trust it, move it from {self.pki_dir / 'rejected'} to {self.pki_dir / 'trusted'}")

    # ------------------------------------------------------------------------------ directory

    def _directory_changed(self, unit_id: str, supervisor: UnitSupervisor | None) -> None:
        if self._running:  # a stopped server stays subscribed (the directory has no unsubscribe): ignore
            self._changes.put_nowait((unit_id, supervisor))

    async def _follow_directory(self) -> None:
        while True:
            unit_id, supervisor = await self._changes.get()
            assert self.publisher is not None
            shown = self.publisher.units.get(unit_id)
            if supervisor is not None and shown is not None and shown[0] is supervisor:
                continue  # already shown (added while the server was starting)
            if unit_id in self._units:
                await self._remove_unit(unit_id)
            if supervisor is not None:
                await self._add_unit(supervisor)

    async def _add_unit(self, supervisor: UnitSupervisor) -> None:
        assert self._server is not None and self._types is not None and self._gateway is not None
        server = self._server
        unit_id = supervisor.unit_id
        if unit_id in self._units:
            return

        def link(method: Node, unit_nodeid: ua.NodeId) -> None:
            name = method.nodeid.Identifier.rsplit(".", 1)[-1]
            handler = self._unit_set_power(unit_id, unit_nodeid) if name == "SetPower" else \
                self._unit_reset_fault(unit_id, unit_nodeid)
            server.link_method(method, handler)

        instance = await model.create_unit(server, self._types, self._gateway, self.gateway_id, unit_id, link)
        if self._compactor is not None:  # ~0.5 MB of asyncua objects per unit otherwise
            self._compactor.compact(model.instance_nodeids(server, instance))
        self._units[unit_id] = instance
        self._setpoint_nodes[instance.child("PowerSetpointKw")] = (unit_id, "p")
        self._setpoint_nodes[instance.child("ReactivePowerSetpointKvar")] = (unit_id, "q")
        assert self.publisher is not None
        self.publisher.add(supervisor, instance)
        if self._running and self.started.is_set():
            _freeze_built_objects()
        self.log.info("opcua_unit_added", unit=unit_id)

    async def _remove_unit(self, unit_id: str) -> None:
        assert self._server is not None and self.publisher is not None
        instance = self._units.pop(unit_id)
        self._applied.pop(unit_id, None)
        for nodeid in [n for n, (u, _) in self._setpoint_nodes.items() if u == unit_id]:
            del self._setpoint_nodes[nodeid]
        assert self._gateway is not None
        await model.delete_instance(self._server, self._gateway.child("Units"), instance)
        self.publisher.forget(unit_id)  # the unit counts drop only once its nodes are gone
        self.log.info("opcua_unit_removed", unit=unit_id)

    # -------------------------------------------------------------------------------- methods

    def _unit_set_power(self, unit_id: str, unit_nodeid: ua.NodeId):
        async def set_power(parent: ua.NodeId, *arguments: Any):
            parsed = called_on(parent, unit_nodeid, "SetPower") or set_power_arguments(arguments)
            if isinstance(parsed, Refused):
                return self._refuse(parsed, unit=unit_id)
            p_kw, q_kvar, command_id = parsed
            return await self._call(self.commands.set_unit_power(
                unit_id, p_kw, q_kvar, command_id, role=current_role(), user=current_user_name()))
        return set_power

    async def _gateway_set_power(self, parent: ua.NodeId, *arguments: Any):
        assert self._gateway is not None
        parsed = called_on(parent, self._gateway.node.nodeid, "SetPower") or set_power_arguments(arguments)
        if isinstance(parsed, Refused):
            return self._refuse(parsed, unit="")
        p_kw, q_kvar, command_id = parsed
        return await self._call(self.commands.set_gateway_power(
            p_kw, q_kvar, command_id, role=current_role(), user=current_user_name()))

    def _unit_reset_fault(self, unit_id: str, unit_nodeid: ua.NodeId):
        async def reset_fault(parent: ua.NodeId, *arguments: Any):
            refused = called_on(parent, unit_nodeid, "ResetFault")
            if refused is not None:
                return self._refuse(refused, unit=unit_id)
            if arguments:
                return self._refuse(Refused("BadTooManyArguments", "ResetFault takes no arguments"), unit=unit_id)
            try:
                await self.commands.reset_fault(unit_id, role=current_role())
            except CommandRejected as err:
                self.log.warning("opcua_command_refused", unit=unit_id, status=err.status, reason=err.message)
                return ua.StatusCode(getattr(ua.StatusCodes, err.status))
            self.log.info("opcua_fault_reset", unit=unit_id, user=current_user_name())
            return []
        return reset_fault

    def _refuse(self, refused: Refused, unit: str) -> ua.CallMethodResult:
        """A method call refused at the edge: a status (and one per argument), a log line, no traceback."""
        self.log.warning("opcua_command_refused", unit=unit, status=refused.status, reason=refused.reason,
                         user=current_user_name())
        return ua.CallMethodResult(StatusCode=ua.StatusCode(getattr(ua.StatusCodes, refused.status)),
                                   InputArgumentResults=list(refused.per_argument))

    async def _call(self, command: Any) -> Any:
        try:
            applied: Applied = await command
        except CommandRejected as err:
            self.log.warning("opcua_command_refused", status=err.status, reason=err.message, user=current_user_name())
            return ua.StatusCode(getattr(ua.StatusCodes, err.status))
        return [ua.Variant(applied.p_kw, ua.VariantType.Double), ua.Variant(applied.q_kvar, ua.VariantType.Double)]

    def _on_applied(self, unit_id: str, applied: Applied) -> None:
        """Show the accepted setpoint on the unit's setpoint variables (written by the next loop turn)."""
        self._applied[unit_id] = (applied.p_kw, applied.q_kvar)
        instance = self._units.get(unit_id)
        if instance is None or self._server is None:
            return
        server = self._server

        async def show() -> None:
            for name, value in (("PowerSetpointKw", applied.p_kw), ("ReactivePowerSetpointKvar", applied.q_kvar)):
                await server.write_attribute_value(instance.child(name),
                                                   ua.DataValue(ua.Variant(value, ua.VariantType.Double)))

        task = asyncio.get_running_loop().create_task(show())
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)


def _freeze_built_objects() -> None:
    """Move every object alive now (the address space above all) out of the cyclic collector's way.

    asyncua's address space is ~10^5-10^6 long-lived objects; each full collection walked all of them
    (hundreds of ms at 200 units, during which no poll, command or publish ran). Frozen objects are still
    freed by reference counting when a unit is removed; only reference cycles among them would stay,
    and the address space has none (nodes refer to each other by NodeId, not by object).
    """
    gc.freeze()


def _hostnames(listen_host: str) -> tuple[str, ...]:
    names = [socket.gethostname(), "localhost", "127.0.0.1"]
    if listen_host and listen_host not in ("0.0.0.0", "::") and listen_host not in names:
        names.append(listen_host)
    return tuple(names)
