"""The vendor_b simulator: one real asyncua server per container, driven by the VRFB chemistry model.

Each container listens on its own port (``--port``, ``--port + 1`` ...) on 127.0.0.1 and offers
Basic256Sha256/SignAndEncrypt and None. A controller cycle every ``tick_s`` steps the chemistry's
equivalent circuit at the commanded power and publishes the results (``Telemetry/Sequence`` always
advances, so a client can tell a live controller from a frozen one).

Fault knobs for tests, on the in-process object: :attr:`frozen` (stop publishing: values and their
timestamps stop changing), :meth:`drop_sessions` (close every client connection), :attr:`reject_certificates`
(refuse every client certificate with ``BadCertificateUntrusted``), :attr:`slow_s` (every method call
answers this much later), and :meth:`stop` / :meth:`start` (a restart on the same port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from asyncua import Server, ua
from asyncua.common.utils import ServiceError
from asyncua.crypto.cert_gen import setup_self_signed_certificate
from cryptography.x509.oid import ExtendedKeyUsageOID

from bessgw.plugin import ChemistryModel, SimulatorContext, SimulatorSpec
from bessgw_vendor_b.addressspace import (
    CONTAINERS,
    CONTROL,
    IDENTITY,
    METHODS,
    NAMESPACE_URI,
    STATE_FAULT,
    STATE_RUNNING,
    STATE_STANDBY,
    TELEMETRY,
)

_TYPES = {
    "double": ua.VariantType.Double,
    "uint32": ua.VariantType.UInt32,
    "int32": ua.VariantType.Int32,
    "boolean": ua.VariantType.Boolean,
    "string": ua.VariantType.String,
}
RATED_KW = 250.0
ENERGY_KWH = 1000.0


class Container:
    """One container's controller state (what the OPC UA server shows and the methods change)."""

    def __init__(self, name: str, rated_kw: float, energy_kwh: float) -> None:
        self.name = name
        self.rated_kw = rated_kw
        self.energy_kwh = energy_kwh
        self.state = STATE_STANDBY
        self.p_setpoint_kw = 0.0
        self.q_setpoint_kvar = 0.0
        self.alarm_code = 0
        self.sequence = 0
        self.heartbeat = 0
        self.set_power_calls = 0
        self.nodes: dict[str, ua.NodeId] = {}


class VendorBSimulator:
    """``count`` VRFB containers, each a real asyncua server on 127.0.0.1."""

    def __init__(self, chemistry: ChemistryModel, count: int = 1, port: int = 0, *, host: str = "127.0.0.1",
                 pki_dir: Path | None = None, tick_s: float = 0.1, soc_pct: float = 50.0,
                 rated_kw: float = RATED_KW, energy_kwh: float = ENERGY_KWH) -> None:
        self.chemistry = chemistry
        self.host = host
        self.tick_s = tick_s
        self.ports = [_free_port(host) if port == 0 else port + i for i in range(count)]
        self.containers = [Container(f"VRFB-{i + 1:02d}", rated_kw, energy_kwh) for i in range(count)]
        self.circuit = chemistry.equivalent_circuit(count, energy_kwh, soc_pct=soc_pct, temp_c=25.0)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if pki_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="vendor_b-pki-")
            pki_dir = Path(self._tmp.name)
        self.pki_dir = pki_dir
        self.servers: list[Server] = []
        self.frozen = False
        self.reject_certificates = False
        self.slow_s = 0.0
        self.rejected = 0
        self._ticker: asyncio.Task[None] | None = None

    def endpoint(self, index: int = 0) -> str:
        return f"opc.tcp://{self.host}:{self.ports[index]}/vendor_b"

    # ---------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> VendorBSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    async def start(self) -> None:
        """Serve every container (again, after :meth:`stop`, on the same ports and with the same state)."""
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        for index, container in enumerate(self.containers):
            server = await self._build(index, container)
            await server.start()
            self.servers.append(server)
        await self._publish(dt.datetime.now(dt.timezone.utc))
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="vendor_b:tick")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        servers, self.servers = self.servers, []
        for server in servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.stop(), 5.0)

    def drop_sessions(self) -> None:
        """Close every client connection now (the servers keep listening)."""
        for server in self.servers:
            for transport in list(server.iserver.asyncio_transports):
                transport.close()

    # ---------------------------------------------------------------------------- the model

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.tick_s)
            now = loop.time()
            dt_s, last = now - last, now
            if self.frozen:
                continue
            await self._read_controls()
            self._step(dt_s)
            await self._publish(dt.datetime.now(dt.timezone.utc))

    def _commanded_kw(self, index: int, container: Container) -> float:
        if container.state != STATE_RUNNING:
            return 0.0
        p = max(-container.rated_kw, min(container.rated_kw, container.p_setpoint_kw))
        soc = float(self.circuit.soc_pct[index])
        if (p > 0 and soc <= self.chemistry.soc_min_pct) or (p < 0 and soc >= self.chemistry.soc_max_pct):
            return 0.0
        return p

    async def _read_controls(self) -> None:
        """Pick up what clients wrote to the control variables (writes need no method call)."""
        for container, server in zip(self.containers, self.servers, strict=True):
            p_kw = server.read_attribute_value(container.nodes["PowerSetpointKw"]).Value.Value
            container.p_setpoint_kw = max(-container.rated_kw, min(container.rated_kw, float(p_kw)))
            q_kvar = server.read_attribute_value(container.nodes["ReactiveSetpointKvar"]).Value.Value
            container.q_setpoint_kvar = float(q_kvar)
            container.heartbeat = int(server.read_attribute_value(container.nodes["HeartbeatCounter"]).Value.Value)

    def _step(self, dt_s: float) -> None:
        p = np.array([self._commanded_kw(i, c) for i, c in enumerate(self.containers)], dtype=float)
        self.circuit.step(p, dt_s, 25.0)

    async def _publish(self, now: dt.datetime) -> None:
        for index, (container, server) in enumerate(zip(self.containers, self.servers, strict=True)):
            container.sequence = (container.sequence + 1) & 0xFFFFFFFF
            cell_v = float(self.circuit.cell_v[index])
            values: dict[str, Any] = {
                "Sequence": container.sequence,
                "State": container.state,
                "SocPct": float(self.circuit.soc_pct[index]),
                "PowerKw": self._commanded_kw(index, container),
                "ReactivePowerKvar": container.q_setpoint_kvar if container.state == STATE_RUNNING else 0.0,
                "StackVoltageV": float(self.circuit.pack_v[index]),
                "StackCurrentA": float(self.circuit.pack_a[index]),
                "CellVoltageMinV": cell_v - 0.004,
                "CellVoltageMaxV": cell_v + 0.004,
                "ElectrolyteTempC": float(self.circuit.temp_c[index]),
                "PumpRunning": container.state == STATE_RUNNING,
                "AlarmCode": container.alarm_code,
            }
            for name, value in values.items():
                variant = ua.Variant(value, _TYPES[TELEMETRY[name]])
                await server.write_attribute_value(
                    container.nodes[name], ua.DataValue(variant, SourceTimestamp=now, ServerTimestamp=now))

    # ------------------------------------------------------------------------- the server

    async def _build(self, index: int, container: Container) -> Server:
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint(index))
        server.set_server_name(f"vendor_b {container.name}")
        uri = f"urn:vendor-b:controller:{container.name}"
        await server.set_application_uri(uri)
        key, cert = self.pki_dir / f"{container.name}_key.pem", self.pki_dir / f"{container.name}_cert.der"
        await setup_self_signed_certificate(key, cert, uri, socket.gethostname(),
                                            [ExtendedKeyUsageOID.SERVER_AUTH], {"organizationName": "vendor_b"})
        await server.load_certificate(str(cert))
        await server.load_private_key(str(key))
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity,
                                    ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
                                    ua.SecurityPolicyType.Basic256Sha256_Sign])
        server.set_certificate_validator(self._validate_certificate)
        ns = await server.register_namespace(NAMESPACE_URI)
        containers = await server.nodes.objects.add_folder(ua.NodeId(CONTAINERS, ns), ua.QualifiedName(CONTAINERS, ns))
        root = await containers.add_object(ua.NodeId(container.name, ns), ua.QualifiedName(container.name, ns))
        identity = await root.add_folder(ua.NodeId(f"{container.name}.Identity", ns), ua.QualifiedName("Identity", ns))
        for name, value in self._identity(index, container).items():
            await identity.add_variable(ua.NodeId(f"{container.name}.Identity.{name}", ns),
                                        ua.QualifiedName(name, ns), ua.Variant(value, _TYPES[IDENTITY[name]]))
        telemetry = await root.add_folder(ua.NodeId(f"{container.name}.Telemetry", ns),
                                          ua.QualifiedName("Telemetry", ns))
        for name, kind in TELEMETRY.items():
            node = await telemetry.add_variable(ua.NodeId(f"{container.name}.Telemetry.{name}", ns),
                                                ua.QualifiedName(name, ns), ua.Variant(_zero(kind), _TYPES[kind]))
            container.nodes[name] = node.nodeid
        control = await root.add_folder(ua.NodeId(f"{container.name}.Control", ns), ua.QualifiedName("Control", ns))
        initial = {"PowerSetpointKw": container.p_setpoint_kw, "ReactiveSetpointKvar": container.q_setpoint_kvar,
                   "HeartbeatCounter": container.heartbeat}
        for name, kind in CONTROL.items():
            node = await control.add_variable(ua.NodeId(f"{container.name}.Control.{name}", ns),
                                              ua.QualifiedName(name, ns), ua.Variant(initial[name], _TYPES[kind]))
            await node.set_writable()
            container.nodes[name] = node.nodeid
        for name, (inputs, outputs) in METHODS.items():
            await control.add_method(
                ua.NodeId(f"{container.name}.Control.{name}", ns), ua.QualifiedName(name, ns),
                self._method(container, server, name),
                [_argument(arg) for arg in inputs], [_argument(arg) for arg in outputs],
            )
        return server

    def _identity(self, index: int, container: Container) -> dict[str, Any]:
        chem = self.chemistry
        cells = round(float(self.circuit.pack_v[index] / self.circuit.cell_v[index]))
        return {
            "Vendor": "VENDOR-B", "Model": "VRFB-250-1000", "SerialNumber": f"VB{container.name[-2:]}0042",
            "FirmwareVersion": "3.2.1", "ProtocolVersion": "2",
            "RatedChargeKw": container.rated_kw, "RatedDischargeKw": container.rated_kw,
            "RatedEnergyKwh": container.energy_kwh, "MaxReactiveKvar": container.rated_kw * 0.5,
            "SocMinPct": chem.soc_min_pct, "SocMaxPct": chem.soc_max_pct,
            "ElectrolyteTempMinC": chem.temp_min_c, "ElectrolyteTempMaxC": chem.temp_max_c,
            "StackVoltageMinV": chem.cell_v_min * cells, "StackVoltageMaxV": chem.cell_v_max * cells,
            "RampKwPerS": container.rated_kw,  # full power in a second: the pumps are already running
        }

    def _method(self, container: Container, server: Server, name: str) -> Any:
        async def handler(parent: ua.NodeId, *args: ua.Variant) -> list[ua.Variant]:
            if self.slow_s > 0:
                await asyncio.sleep(self.slow_s)
            if name == "SetPower":
                p_kw, q_kvar = float(args[0].Value), float(args[1].Value)
                container.set_power_calls += 1
                container.p_setpoint_kw = max(-container.rated_kw, min(container.rated_kw, p_kw))
                container.q_setpoint_kvar = q_kvar
                await server.write_attribute_value(container.nodes["PowerSetpointKw"],
                                                   ua.DataValue(ua.Variant(container.p_setpoint_kw,
                                                                           ua.VariantType.Double)))
                await server.write_attribute_value(container.nodes["ReactiveSetpointKvar"],
                                                   ua.DataValue(ua.Variant(q_kvar, ua.VariantType.Double)))
                return [ua.Variant(container.p_setpoint_kw, ua.VariantType.Double)]
            if name == "Start" and container.state == STATE_STANDBY:
                container.state = STATE_RUNNING
            elif name == "Stop" and container.state == STATE_RUNNING:
                container.state = STATE_STANDBY
                container.p_setpoint_kw = 0.0
            elif name == "ResetFault" and container.state == STATE_FAULT:
                container.state, container.alarm_code = STATE_STANDBY, 0
            return []

        return handler

    async def _validate_certificate(self, certificate: Any, app_description: Any) -> None:
        if self.reject_certificates:
            self.rejected += 1
            raise ServiceError(ua.StatusCodes.BadCertificateUntrusted)

    async def control_value(self, index: int, name: str) -> Any:
        """A control variable as a client last wrote it (e.g. ``HeartbeatCounter``)."""
        container = self.containers[index]
        return self.servers[index].read_attribute_value(container.nodes[name]).Value.Value


def _zero(kind: str) -> Any:
    return {"double": 0.0, "uint32": 0, "int32": 0, "boolean": False, "string": ""}[kind]


def _argument(name: str) -> ua.Argument:
    argument = ua.Argument()
    argument.Name = name
    argument.DataType = ua.NodeId(ua.ObjectIds.Double)
    argument.ValueRank = -1
    argument.Description = ua.LocalizedText(name)
    return argument


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------ bessgw sim vendor_b


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, required=True, help="Port of the first container (next ones +1)")
    parser.add_argument("--count", type=int, default=1, help="Number of containers (default 1)")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1)")
    parser.add_argument("--pki-dir", type=Path, default=None, help="Where the server certificates are kept")
    parser.add_argument("--soc-pct", type=float, default=50.0, help="Initial state of charge")


async def run(args: argparse.Namespace, context: SimulatorContext) -> None:
    if not 1 <= args.count <= 100:
        raise ValueError("--count must be 1..100")
    chemistry = context.chemistries["vrfb"]
    async with VendorBSimulator(chemistry, args.count, args.port, host=args.host, pki_dir=args.pki_dir,
                                soc_pct=args.soc_pct):
        context.ready()
        await asyncio.Event().wait()


SPEC = SimulatorSpec(
    name="vendor_b",
    add_arguments=add_arguments,
    run=run,
    description="vendor_b VRFB containers, one OPC UA server per container (ports PORT, PORT+1, ...)",
)
