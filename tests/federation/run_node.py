"""A stand-alone federation node for multi-process tests.

    python -m tests.federation.run_node --id gw1 --bind 127.0.0.1:0 --key BASE64 [--seed HOST:PORT ...]
        [--set probe_interval_s=0.2 ...] [--units 3] [--state-dir DIR] [--capture N]

Prints one JSON line ``{"ready": {"id": ..., "addr": "host:port", "bound": "host:port", "boot": N}}`` once
bound (``addr`` is what peers write to, ``bound`` the socket itself: they differ with ``advertise_port``),
then reads one JSON command per line on stdin and answers one JSON line on stdout each:

- ``{"cmd": "members"}`` / ``{"cmd": "view"}`` — the service's tables;
- ``{"cmd": "versions"}`` — every owner's ``{key: version}`` and generation as this node holds them;
- ``{"cmd": "set_unit", "unit_id": "u1", "soc_pct": 55.0, "state": "running"}`` — publish a unit now;
- ``{"cmd": "block", "addrs": ["127.0.0.1:4000", ...]}`` / ``{"cmd": "unblock"}`` /
  ``{"cmd": "drop_rate", "rate": 0.05}`` — fault injection in the transport;
- ``{"cmd": "counters"}`` — drop reasons, first contacts answered, traffic, our boot and the boot we
  know of every member; ``{"cmd": "leave"}`` — leave and exit;
- ``{"cmd": "captured"}`` — with ``--capture N``, the first N datagrams this node received, raw (base64)
  with their source ``host:port``, as an eavesdropper on the wire would have recorded them.

Real ``bessgw run`` gateways run the same :class:`FederationService`, wired by the daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bessgw.config import FederationSection
from bessgw.federation.service import FederationService
from bessgw.federation.view import UnitSummary, to_jsonable
from bessgw.model import Quality, UnitState


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.federation.run_node", description=__doc__.split("\n")[0])
    parser.add_argument("--id", required=True)
    parser.add_argument("--bind", default="127.0.0.1:0", help="host:port (port 0: any free one)")
    parser.add_argument("--seed", action="append", default=[])
    parser.add_argument("--key", action="append", required=True, help="base64 campus key (repeat: primary first)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="any [federation] setting, e.g. probe_interval_s=0.2")
    parser.add_argument("--units", type=int, default=0, help="simulated units to publish")
    parser.add_argument("--state-dir", type=Path, default=None, help="keep the boot counter here")
    parser.add_argument("--capture", type=int, default=0, metavar="N", help="record the first N datagrams received")
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> FederationSection:
    host, _, port = args.bind.rpartition(":")
    table: dict[str, Any] = {"bind_host": host, "bind_port": int(port), "seeds": args.seed, "keys": args.key}
    for item in args.set:
        name, _, value = item.partition("=")
        table[name] = json.loads(value)
    return FederationSection.model_validate(table)


def unit(unit_id: str, soc_pct: float = 50.0, state: str = "running", quality: str = "good") -> UnitSummary:
    return UnitSummary(unit_id, UnitState(state), Quality(quality), soc_pct, 0.0, 500.0, 500.0, 1000.0, time.time())


class Runner:
    def __init__(self, service: FederationService, units: int, capture: int = 0) -> None:
        self.service = service
        self.units = {f"u{i}": unit(f"u{i}") for i in range(units)}
        self.captured: list[tuple[bytes, tuple[str, int]]] = []
        if capture > 0:
            self._wrap_receiver(capture)

    def _wrap_receiver(self, limit: int) -> None:
        """Keep a copy of what arrives on the socket before the node looks at it (a wiretap, bounded)."""
        transport = self.service.node.transport
        deliver = transport.on_datagram

        def tap(data: bytes, addr: tuple[str, int]) -> None:
            if len(self.captured) < limit:
                self.captured.append((data, addr))
            deliver(data, addr)

        transport.on_datagram = tap

    async def serve(self) -> None:
        await self.service.start()
        node = self.service.node
        addr, bound = node.addr, node.transport.bound
        assert addr is not None and bound is not None  # both set by start()
        _emit({"ready": {"id": node.id, "addr": f"{addr[0]}:{addr[1]}", "bound": f"{bound[0]}:{bound[1]}",
                         "boot": node.boot}})
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        tasks = [asyncio.create_task(self.service.run()), asyncio.create_task(self._refresh_units()),
                 asyncio.create_task(self._commands(reader))]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a crashed service ends the process with its traceback
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _commands(self, reader: asyncio.StreamReader) -> None:
        """Answer commands until stdin closes or we are told to leave."""
        while True:
            line = await reader.readline()
            if not line:
                return
            try:
                reply = await self.command(json.loads(line))
            except Exception as err:  # a bad test command is answered, not fatal
                reply = {"error": f"{type(err).__name__}: {err}"}
            _emit(reply)
            if reply.get("left"):
                return

    async def _refresh_units(self) -> None:
        while True:
            now = time.time()
            self.units = {k: UnitSummary(**{**asdict(v), "timestamp": now}) for k, v in self.units.items()}
            self.service.update_local_units(self.units.values())
            await asyncio.sleep(0.2)

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        node = self.service.node
        if cmd == "members":
            return {"members": to_jsonable(self.service.members())}
        if cmd == "view":
            return {"view": to_jsonable(self.service.campus_view())}
        if cmd == "versions":
            state = node.state
            assert state is not None
            return {"versions": {name: {"generation": o.generation, "watermark": o.watermark,
                                        "keys": {k: v for k, (v, _) in o.entries.items()}}
                                 for name, o in state.owners.items()}}
        if cmd == "set_unit":
            summary = unit(request["unit_id"], float(request.get("soc_pct", 50.0)), request.get("state", "running"))
            self.units[summary.unit_id] = summary
            self.service._published.pop(summary.unit_id, None)  # publish now, not at the next interval
            self.service.update_local_units(self.units.values())
            return {"ok": True}
        if cmd == "block":
            node.faults.blocked = {_addr(a) for a in request["addrs"]}
            return {"ok": True}
        if cmd == "unblock":
            node.faults.blocked = set()
            return {"ok": True}
        if cmd == "drop_rate":
            node.faults.drop_rate = float(request["rate"])
            return {"ok": True}
        if cmd == "counters":
            members = node.membership.members if node.membership else {}
            return {"drops": dict(node.drops), "handshakes": node.handshakes,
                    "traffic": asdict(node.transport.counters), "boot": node.boot,
                    "sent_versions": {str(v): n for v, n in getattr(node, "sent_versions", {}).items()},
                    "incarnation": node.membership.me.incarnation if node.membership else None,
                    "boots": {name: node.boot_of(name) for name in members if name != node.id}}
        if cmd == "captured":
            return {"captured": [[base64.b64encode(data).decode(), f"{host}:{port}"]
                                 for data, (host, port) in self.captured]}
        if cmd == "leave":
            await self.service.leave()
            return {"left": True}
        return {"error": f"unknown command {cmd!r}"}


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host, int(port))


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    service = FederationService(settings_from(args), args.id, log=_quiet_log(), state_dir=args.state_dir)
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        asyncio.run(Runner(service, args.units, args.capture).serve())
    return 0


def _quiet_log() -> Any:
    import structlog

    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    return structlog.get_logger("bessgw.federation")


if __name__ == "__main__":
    sys.exit(main())
