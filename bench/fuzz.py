"""Fuzz harness: generated inputs into every surface an outsider can reach; counts what goes wrong.

    python bench/fuzz.py --surface config --count 100000 --seed 1
    python bench/fuzz.py --surface all --count 2000

Surfaces (each runs the real code path, in this process):

* ``config``  mutated TOML (shipped configs with values, lines and bytes mutated) into ``load_config``
  with the installed plugins, then the pre-flight checks: only ``ConfigError`` may come out;
* ``admin``   request lines (mutated commands, hostile JSON, raw bytes) to a real ``AdminServer`` with
  the real operator handlers and a real control service (journal included), over its UNIX socket;
  every request must get one JSON reply, never "internal error";
* ``modbus``  responses of a real vendor_a simulator, mutated in a TCP proxy (bit flips, truncation,
  wrong ids and counts, exception codes, garbage), into the Modbus transport and the vendor_a driver:
  only ``DeviceError`` may come out of ``identify()`` / ``read()``;
* ``can``     frames (vendor_c ids with random, mutated or valid payloads, random ids, odd lengths) on a
  python-can virtual bus into the CAN transport's reader and vendor_c drivers;
* ``gossip``  datagrams into a live federation node over UDP: random bytes, mutated sealed datagrams,
  and authentic (sealed with the campus key) messages with fuzzed bodies; the node must count and drop
  what it refuses, never hit its ``internal`` drop (a handler bug), and keep answering;
* ``opcua``   a hook: another module registers a runner with :func:`register_surface`.

Per surface it prints the number of inputs, crashes (an unexpected exception type, or no reply),
hangs (an input not handled within ``--hang-s``), tracebacks in the log (structlog ``exc_info``,
stdlib logging records with an exception, asyncio's unhandled task errors), and RSS growth from the
end of warm-up (the first 10 % of inputs) to the end. Ends with one JSON line. Deterministic for a
given seed except for what the kernel and the simulators' clocks decide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parent.parent
WARM_UP_SHARE = 0.1


# ------------------------------------------------------------------------------------ accounting


@dataclass
class Stats:
    """What one surface did with its inputs."""

    surface: str
    inputs: int = 0
    crashes: int = 0
    hangs: int = 0
    tracebacks: int = 0
    rss_warm_mb: float = 0.0
    rss_end_mb: float = 0.0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    @property
    def rss_growth_mb(self) -> float:
        return round(self.rss_end_mb - self.rss_warm_mb, 1)

    def outcome(self, name: str) -> None:
        self.outcomes[name] = self.outcomes.get(name, 0) + 1

    def crash(self, what: str, sample: Any) -> None:
        self.crashes += 1
        if len(self.examples) < 10:
            self.examples.append(f"{what}: {repr(sample)[:300]}")

    def hang(self, sample: Any) -> None:
        self.hangs += 1
        if len(self.examples) < 10:
            self.examples.append(f"hang: {repr(sample)[:300]}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rss_growth_mb"] = self.rss_growth_mb
        return data


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class TracebackCounter(logging.Handler):
    """Counts log records that carry a traceback, from structlog and the stdlib alike."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.samples: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or "Traceback" in record.getMessage():
            self._seen(record.getMessage())

    def structlog_processor(self, _logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("exc_info") or "exception" in event:
            self._seen(f"{event.get('event')}: {event.get('error', '')}")
        raise structlog.DropEvent

    def _seen(self, text: str) -> None:
        self.count += 1
        if len(self.samples) < 5:
            self.samples.append(text[:300])


def install_log_capture() -> TracebackCounter:
    counter = TracebackCounter()
    logging.getLogger().addHandler(counter)
    logging.getLogger().setLevel(logging.WARNING)
    structlog.configure(processors=[structlog.processors.add_log_level, counter.structlog_processor],
                        cache_logger_on_first_use=False)

    def unraisable(info: Any) -> None:
        counter._seen(f"unraisable: {info.exc_type.__name__}: {info.exc_value}")

    sys.unraisablehook = unraisable
    return counter


class Hang(Exception):
    """An input was not handled within the hang bound."""


@contextlib.contextmanager
def sync_deadline(seconds: float):
    """Interrupt a synchronous call that takes longer than ``seconds`` (SIGALRM; main thread only)."""

    def expire(_signum: int, _frame: Any) -> None:
        raise Hang()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------- generic values


def nasty_number(rng: random.Random) -> str:
    return rng.choice([
        "0", "-0", "1", "-1", "0.001", "1e-300", "1e308", "-1e308", "1e400", "-1e400", "inf", "-inf", "nan",
        "65535", "65536", "70000", "-70000", "4294967296", "9" * rng.randint(20, 400), "1_000", "0x1F",
        "1.5", "3600", "86400", "86401", str(rng.uniform(-1e6, 1e6)), str(rng.randint(-10, 10**6)),
    ])


def nasty_string(rng: random.Random) -> str:
    return rng.choice([
        "", " ", "/", "..", "../../x", "/dev/zero", "/dev/null", "/proc/self/mem", "/etc/passwd", "a\\u0000b",
        "\\n", "x" * rng.randint(100, 5000), "\\u00e9\\u4e2d", "opc.tcp://127.0.0.1:99999/x", "127.0.0.1:0",
        "--help", "-h", "--version", "vendor_a", "lfp", "%s%n", "${HOME}", "\\ud7ff", "0.0.0.0",
    ])


def nasty_toml_value(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if roll < 0.3:
        return nasty_number(rng)
    if roll < 0.6:
        return json.dumps(nasty_string(rng)).replace("\\\\u", "\\u")
    if roll < 0.7:
        return rng.choice(["true", "false", "1979-05-27T07:32:00Z", "07:32:00", "1979-05-27"])
    if roll < 0.8:
        n = rng.choice([2, 10, 40, 200, 1000, 5000])
        return "[" * n + "1" + "]" * n
    if roll < 0.9 and depth < 3:
        return "[" + ", ".join(nasty_toml_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    if depth < 3:
        return "{" + ", ".join(f"k{i} = {nasty_toml_value(rng, depth + 1)}" for i in range(rng.randint(0, 3))) + "}"
    return "1"


def nasty_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice([0, -1, 1.5, 10**rng.randint(1, 500), -(10**30), 1e308, True, False, None])
    if roll < 0.5:
        return rng.choice(["", "x" * rng.randint(1, 3000), "a\x00b", "a\nb", "\ud800", "status", "local", " "])
    if roll < 0.7 and depth < 4:
        return [nasty_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 4:
        return {rng.choice(["cmd", "p_kw", "q_kvar", "x", "command_id"]): nasty_json(rng, depth + 1)
                for _ in range(rng.randint(0, 4))}
    return 1


def mutate_bytes(rng: random.Random, data: bytes, max_ops: int = 4) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, max_ops)):
        op = rng.random()
        if not buf or op < 0.15:
            buf[rng.randint(0, len(buf)):rng.randint(0, len(buf))] = rng.randbytes(rng.randint(1, 16))
        elif op < 0.55:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op < 0.7:
            i = rng.randrange(len(buf))
            buf[i] = rng.choice([0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)])
        elif op < 0.85:
            del buf[rng.randrange(len(buf)):]
        else:
            i, j = sorted((rng.randrange(len(buf)), rng.randrange(len(buf))))
            buf[i:i] = buf[i:j + 1] * rng.randint(1, 3)
    return bytes(buf)


# ---------------------------------------------------------------------------------------- config


def _config_seeds() -> list[str]:
    return [path.read_text(encoding="utf-8") for path in sorted((ROOT / "config").rglob("*.toml"))]


def mutate_config(rng: random.Random, seed: str, fifo: Path) -> str:
    lines = seed.splitlines()
    for _ in range(rng.randint(1, 4)):
        if not lines:
            lines = ["[gateway]", 'id = "gw"']
        i = rng.randrange(len(lines))
        op = rng.random()
        line = lines[i]
        if op < 0.45 and "=" in line and not line.lstrip().startswith("#"):
            key = line.split("=", 1)[0]
            value = rng.choice([nasty_toml_value(rng), f'"{fifo}"', '"/dev/zero"', '"/"', '"../../x"'])
            lines[i] = f"{key}= {value}"
        elif op < 0.6:
            lines.insert(i, f"{rng.choice(['key_file', 'journal_file', 'state_dir', 'x', 'port'])} = "
                            f"{nasty_toml_value(rng)}")
        elif op < 0.7:
            del lines[i]
        elif op < 0.8:
            lines.insert(i, rng.choice(["[federation]", "[northbound.opcua]", "[[units]]", "[[simulators]]",
                                        "[control]", "[defaults]", "[southbound.modbus]", "[plugins.vendor_a]",
                                        'bind_host = "127.0.0.1"', 'args = ["--help"]', "enabled = true"]))
        elif op < 0.9:
            j = rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = mutate_bytes(rng, line.encode(), 3).decode("utf-8", "replace")
    return "\n".join(lines) + "\n"


def fuzz_config(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    from bessgw.config import load_config
    from bessgw.config.preflight import preflight
    from bessgw.errors import ConfigError
    from bessgw.plugin.manager import build_plugin_manager

    registry = build_plugin_manager().collect()
    seeds = _config_seeds()
    with tempfile.TemporaryDirectory(prefix="bessgw-fuzz-config-") as tmp:
        fifo = Path(tmp) / "keys.fifo"
        os.mkfifo(fifo)
        sub = Path(tmp) / "etc"
        sub.mkdir()
        path = sub / "site.toml"
        for index in range(count):
            if index == int(count * WARM_UP_SHARE):
                stats.rss_warm_mb = rss_mb()
            text = mutate_config(rng, rng.choice(seeds), fifo)
            raw = text.encode("utf-8", "surrogatepass")
            if rng.random() < 0.05:
                raw = mutate_bytes(rng, raw, 8)
            path.write_bytes(raw)
            stats.inputs += 1
            try:
                with sync_deadline(hang_s):
                    config = load_config(path, registry)
                    report = preflight(config, str(path))
                stats.outcome("ok" if report.ok else "preflight_refused")
            except ConfigError as err:
                bad = [line for line in err.problems if not line.startswith(str(path))]
                if bad:
                    stats.crash("error line without the file name", bad[0])
                stats.outcome("config_error")
            except Hang:
                stats.hang(text[:300])
            except Exception as err:
                stats.crash(type(err).__name__, f"{err} | {text[:200]}")


# ----------------------------------------------------------------------------------------- admin


def admin_request(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.45:
        request: dict[str, Any] = {"cmd": rng.choice(["setpoint", "status", "release", "heartbeat", "members",
                                                       "view", "nope"])}
        for key in ("p_kw", "q_kvar", "expires_in_s", "command_id"):
            if rng.random() < 0.6:
                request[key] = nasty_json(rng) if rng.random() < 0.5 else rng.uniform(-5000, 5000)
        if rng.random() < 0.3:
            request["command_id"] = rng.choice([f"fz-{rng.randrange(10**6)}", "x" * rng.randint(100, 200), "a b"])
        text = json.dumps(request)
        if rng.random() < 0.2:  # values json.dumps cannot write
            text = text.replace('"p_kw": ', '"p_kw": ' + rng.choice(["1e400", "NaN", "-Infinity", "1" + "0" * 400,
                                                                    "9" * 5000]) + ", \"_\": ", 1)
        return text.encode() + b"\n"
    if roll < 0.6:
        n = rng.choice([10, 100, 1000, 5000])
        opener, closer = rng.choice([(b"[", b"]"), (b'{"a":', b"}")])
        return opener * n + (b"1" if opener != b"[" else b"") + closer * n + b"\n"
    if roll < 0.8:
        try:
            return json.dumps(nasty_json(rng)).encode("utf-8", "surrogatepass") + b"\n"
        except (ValueError, UnicodeEncodeError):
            return b"{}\n"
    if roll < 0.9:
        return mutate_bytes(rng, b'{"cmd":"setpoint","p_kw":100,"command_id":"fz"}', 6).replace(b"\n", b"") + b"\n"
    if roll < 0.95:
        return b'{"cmd":"status","pad":"' + b"x" * rng.randint(16000, 40000) + b'"}\n'
    return rng.randbytes(rng.randint(0, 300)).replace(b"\n", b"") + b"\n"


async def _admin(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    from types import SimpleNamespace

    from bessgw.config import ControlSection, GatewaySection
    from bessgw.control.service import ControlService
    from bessgw.daemon.admin import AdminServer
    from bessgw.daemon.operations import handlers
    from bessgw.daemon.services import RunningService, Services
    from bessgw.unit import UnitDirectory

    log = structlog.get_logger("fuzz")
    with tempfile.TemporaryDirectory(prefix="bessgw-fuzz-admin-") as tmp:
        state = Path(tmp)
        control = ControlService(ControlSection(), [], state, log)
        services = Services()
        services.running["control"] = RunningService("", control, None)  # type: ignore[arg-type]
        gateway = SimpleNamespace(config=SimpleNamespace(gateway=GatewaySection(id="fuzz", state_dir=state)),
                                  directory=UnitDirectory(), reloads=0, services=services, log=log)
        server = AdminServer(state / "admin.sock", handlers(gateway), log)  # type: ignore[arg-type]
        task = asyncio.create_task(server.run())
        deadline = time.monotonic() + 10
        while not (state / "admin.sock").exists():
            if time.monotonic() > deadline:
                raise RuntimeError("admin socket did not appear")
            await asyncio.sleep(0.01)
        for index in range(count):
            if index == int(count * WARM_UP_SHARE):
                stats.rss_warm_mb = rss_mb()
            data = admin_request(rng)
            stats.inputs += 1
            try:
                async with asyncio.timeout(hang_s):
                    reader, writer = await asyncio.open_unix_connection(str(state / "admin.sock"), limit=1 << 20)
                    try:
                        writer.write(data)
                        with contextlib.suppress(ConnectionError):
                            await writer.drain()
                        line = await reader.readline()
                    finally:
                        writer.close()
            except TimeoutError:
                stats.hang(data[:200])
                continue
            except OSError as err:  # e.g. reset before the reply could be read
                stats.crash(f"connection error ({type(err).__name__})", data[:200])
                continue
            if not line:
                stats.crash("no reply", data[:200])
                continue
            try:
                reply = json.loads(line)
            except ValueError:
                stats.crash("reply is not JSON", line[:200])
                continue
            if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
                stats.crash("reply without ok", line[:200])
            elif not reply["ok"] and str(reply.get("error", "")).startswith("internal error"):
                stats.crash("internal error reply", data[:200])
            else:
                stats.outcome("ok" if reply["ok"] else "refused")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        control.journal.close()


def fuzz_admin(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    asyncio.run(_admin(count, rng, stats, hang_s))


# ---------------------------------------------------------------------------------------- modbus


def mutate_modbus_frame(rng: random.Random, frame: bytes) -> bytes:
    """One Modbus TCP response frame (MBAP + PDU), mutated the ways a broken device or network does."""
    if len(frame) < 8:
        return frame
    tid, proto, _length, uid = frame[0:2], frame[2:4], frame[4:6], frame[6:7]
    pdu = bytearray(frame[7:])
    op = rng.random()
    if op < 0.25:  # plausible shape, random register values (decoding and range checks)
        if pdu[0] in (3, 4) and len(pdu) >= 2:
            pdu[2:] = rng.randbytes(len(pdu) - 2)
        else:
            pdu[1:] = rng.randbytes(max(0, len(pdu) - 1))
    elif op < 0.35:  # exception response
        pdu = bytearray([pdu[0] | 0x80, rng.choice([1, 2, 3, 4, 6, 11, rng.randrange(256)])])
    elif op < 0.45:  # byte count that disagrees with the data
        if len(pdu) >= 2:
            pdu[1] = rng.randrange(256)
    elif op < 0.55:  # other function code
        pdu[0] = rng.randrange(256)
    elif op < 0.65:  # wrong transaction / unit id
        tid = rng.randbytes(2) if rng.random() < 0.5 else tid
        uid = rng.randbytes(1)
    elif op < 0.75:  # truncated or padded PDU (MBAP length kept consistent)
        pdu = pdu[:rng.randrange(len(pdu))] if rng.random() < 0.5 else pdu + rng.randbytes(rng.randint(1, 20))
    elif op < 0.85:  # bit flips anywhere, MBAP length included
        return mutate_bytes(rng, frame, 3)
    else:
        pdu = bytearray(mutate_bytes(rng, bytes(pdu), 3))
    length = (len(pdu) + 1).to_bytes(2, "big")
    return tid + proto + length + uid + bytes(pdu)


async def _modbus(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    from bessgw.config import parse_config, plugin_options, unit_options
    from bessgw.errors import BessgwError
    from bessgw.plugin import DriverContext
    from bessgw.plugin.manager import build_plugin_manager
    from bessgw.southbound.modbus.transport import ModbusTransport

    registry = build_plugin_manager().collect()
    args = registry.simulators["vendor_a"].parse_args(["--port", "0", "--count", "1",
                                                       "--firmware", rng.choice(["v1", "v2"])])
    log = structlog.get_logger("fuzz")
    from bessgw_vendor_a.simulator import simulator_from_args

    sim = simulator_from_args(args, registry.chemistries)
    await sim.start()
    upstream_port = sim.ports[0]
    frames = {"n": 0, "mutated": 0}
    budget = {"left": count}

    handlers: set[asyncio.Task[None]] = set()
    open_writers: set[asyncio.StreamWriter] = set()

    async def proxy(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        handlers.add(asyncio.current_task())  # type: ignore[arg-type]
        open_writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", upstream_port)
        except OSError:
            client_w.close()
            open_writers.discard(client_w)
            handlers.discard(asyncio.current_task())  # type: ignore[arg-type]
            return

        async def upstream() -> None:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while data := await client_r.read(4096):
                    server_w.write(data)
                    await server_w.drain()
            server_w.close()

        pump = asyncio.create_task(upstream())
        open_writers.add(server_w)
        try:
            while True:
                head = await server_r.readexactly(7)
                body = await server_r.readexactly(max(0, int.from_bytes(head[4:6], "big") - 1))
                frame = head + body
                frames["n"] += 1
                if budget["left"] > 0 and rng.random() < 0.6:
                    budget["left"] -= 1
                    frames["mutated"] += 1
                    frame = mutate_modbus_frame(rng, frame)
                    if rng.random() < 0.03:
                        frame += rng.randbytes(rng.randint(1, 64))  # trailing garbage on the stream
                client_w.write(frame)
                await client_w.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            pump.cancel()
            client_w.close()
            server_w.close()
            open_writers.discard(client_w)
            open_writers.discard(server_w)
            handlers.discard(asyncio.current_task())  # type: ignore[arg-type]

    proxy_server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    proxy_port = proxy_server.sockets[0].getsockname()[1]
    config = parse_config({
        "gateway": {"id": "fuzz"},
        "southbound": {"modbus": {"request_timeout_s": 0.05, "connect_timeout_s": 0.2, "reconnect_min_s": 0.001,
                                  "reconnect_max_s": 0.002, "breaker_failures": 1000, "breaker_open_s": 0.01}},
        "units": [{"id": "a1", "driver": "vendor_a", "modbus": {"host": "127.0.0.1", "port": proxy_port}}],
    })
    spec = registry.drivers["vendor_a"]
    transport = ModbusTransport(config, log)
    unit = config.units[0]
    driver = spec.factory(DriverContext(unit.id, transport.link_for(unit), unit_options(unit, spec.unit_options),
                                        plugin_options=plugin_options(config, spec.plugin_options, spec.name),
                                        log=log))
    identified = False
    warm_at = int(count * WARM_UP_SHARE)
    while budget["left"] > 0:
        before = frames["mutated"]
        try:
            async with asyncio.timeout(hang_s):
                if not identified:
                    await driver.identify()
                    identified = True
                    stats.outcome("identified")
                await driver.read()
                stats.outcome("read_ok")
        except TimeoutError:
            stats.hang(f"read after {frames['mutated']} mutated frames")
            identified = False
        except BessgwError:
            stats.outcome("device_error")
            identified = False
        except Exception as err:
            stats.crash(type(err).__name__, str(err))
            identified = False
        stats.inputs = frames["mutated"]
        if before <= warm_at < frames["mutated"] or (warm_at == 0 and not stats.rss_warm_mb):
            stats.rss_warm_mb = rss_mb()
    await driver.close()
    await transport.close()
    proxy_server.close()
    for writer in open_writers:  # the proxy's handlers see their streams end and return
        writer.close()
    await asyncio.wait(handlers, timeout=5.0) if handlers else None
    await sim.stop()


def fuzz_modbus(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    asyncio.run(_modbus(count, rng, stats, hang_s))


# ------------------------------------------------------------------------------------------- can


async def _can(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    import can
    from bessgw_vendor_c import protocol as p

    from bessgw.config import parse_config, unit_options
    from bessgw.errors import BessgwError
    from bessgw.plugin import DriverContext
    from bessgw.plugin.manager import build_plugin_manager
    from bessgw.southbound.can.bus import CAN_ERR_BUSOFF
    from bessgw.southbound.can.transport import CanTransport

    channel = f"fuzz-{uuid.uuid4().hex[:8]}"
    nodes = [1, 2, 3]
    config = parse_config({"gateway": {"id": "fuzz"}, "units": [
        {"id": f"c{n}", "driver": "vendor_c", "can": {"interface": "virtual", "channel": channel, "node_id": n}}
        for n in nodes]})
    registry = build_plugin_manager().collect()
    spec = registry.drivers["vendor_c"]
    log = structlog.get_logger("fuzz")
    transport = CanTransport(config, log)
    drivers = [spec.factory(DriverContext(unit.id, transport.link_for(unit), unit_options(unit, spec.unit_options),
                                          log=log)) for unit in config.units]
    run_task = asyncio.create_task(transport.run())
    ids = [p.frame_id(name, node) for name in p.BMS_MESSAGES for node in nodes]
    valid = [p.encode(p.STATUS, node, SOC=50.0, SOH=98.0, PackVoltage=1300.0, PackCurrent=10.0, BmsState=2,
                      ContactorsClosed=1, WatchdogTripped=0) for node in nodes]
    sender = can.Bus(interface="virtual", channel=channel)
    deadline = time.monotonic() + 10
    while not transport.bus_stats() or not next(iter(transport.bus_stats().values())).opens:
        if time.monotonic() > deadline:
            raise RuntimeError("the CAN transport did not open its bus within 10 s")
        await asyncio.sleep(0.01)  # frames sent before the reader's bus exists would never arrive
    try:
        for index in range(count):
            if index == int(count * WARM_UP_SHARE):
                stats.rss_warm_mb = rss_mb()
            roll = rng.random()
            if roll < 0.15:
                frame = rng.choice(valid)
                message = can.Message(arbitration_id=frame.arbitration_id, data=frame.data, is_extended_id=True)
            elif roll < 0.6:
                message = can.Message(arbitration_id=rng.choice(ids), is_extended_id=True,
                                      data=mutate_bytes(rng, bytes(rng.choice(valid).data), 3)[:8])
            elif roll < 0.8:
                message = can.Message(arbitration_id=rng.choice(ids), is_extended_id=True,
                                      data=rng.randbytes(rng.randint(0, 8)))
            elif roll < 0.9:
                is_fd = rng.random() < 0.5
                message = can.Message(arbitration_id=rng.choice(ids), is_extended_id=True, is_fd=is_fd,
                                      data=rng.randbytes(rng.choice([12, 16, 24, 32, 48, 64]) if is_fd else 8))
            else:
                extended = rng.random() < 0.5
                error_frame = rng.random() < 0.02  # a controller's report; bus-off is left out: it reopens the
                arbitration_id = rng.randrange(1 << (29 if extended else 11))  # bus, and frames meanwhile are lost
                if error_frame:
                    arbitration_id &= ~CAN_ERR_BUSOFF
                message = can.Message(arbitration_id=arbitration_id,
                                      is_extended_id=extended, is_remote_frame=rng.random() < 0.1,
                                      is_error_frame=error_frame, data=rng.randbytes(rng.randint(0, 8)))
            stats.inputs += 1
            sender.send(message)
            if index % 50 == 49 or index == count - 1:
                await asyncio.sleep(0.002)  # let the reader hand the batch over (pacing, not synchronisation)
                for driver in drivers:
                    try:
                        async with asyncio.timeout(hang_s):
                            await driver.read()
                        stats.outcome("read_ok")
                    except TimeoutError:
                        stats.hang(f"vendor_c read after input {index}")
                    except BessgwError:
                        stats.outcome("device_error")
                    except Exception as err:
                        stats.crash(type(err).__name__, str(err))
                if run_task.done():
                    stats.crash("transport task ended", repr(run_task.exception()))
                    break
        deadline = time.monotonic() + 5
        bus_stats = next(iter(transport.bus_stats().values()))
        while bus_stats.frames_rx < stats.inputs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # let the reader hand the last frames over (bounded)
        stats.outcomes["delivered"] = bus_stats.frames_rx
        stats.outcomes["unrouted"] = bus_stats.frames_unrouted
        for _ in range(bus_stats.handler_errors):  # caught at the bus boundary, but a driver decoding bug
            stats.crash("vendor_c frame handler raised", "see the can_handler_failed warning")
    finally:
        sender.shutdown()
        run_task.cancel()
        await asyncio.gather(run_task, return_exceptions=True)
        for driver in drivers:
            with contextlib.suppress(Exception):
                await driver.close()
        await transport.close()


def fuzz_can(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    asyncio.run(_can(count, rng, stats, hang_s))


# ---------------------------------------------------------------------------------------- gossip


def gossip_message(rng: random.Random) -> Any:
    """A well-formed body (real wire types, random but valid values): reaches membership and state."""
    from bessgw.federation.wire import DeltaPart, DigestItem, Entry, MemberUpdate, Message, MsgType, Status, body_of

    nodes = [f"fz{i}" for i in range(8)] + ["gw-fuzz"]

    def member() -> MemberUpdate:
        return MemberUpdate(rng.choice(nodes), "127.0.0.1", rng.randint(1, 65535), rng.randrange(2**20),
                            rng.choice(list(Status)), rng.choice(["", *nodes]))

    def value() -> dict[str, Any] | None:
        return rng.choice([None, {"p_kw": rng.uniform(-1e4, 1e4), "soc_pct": rng.uniform(0, 100)},
                           {"x": "y" * rng.randint(0, 400)}, {f"k{i}": i for i in range(rng.randint(0, 64))}])

    msg = Message(
        rng.choice(list(MsgType)), probe_seq=rng.randrange(2**31), target=rng.choice(["", *nodes]),
        addr=("127.0.0.1", rng.randint(1, 65535)) if rng.random() < 0.3 else None,
        reply=rng.random() < 0.5, join=rng.random() < 0.2,
        member_hash=rng.randbytes(rng.choice([0, 32])), state_hash=rng.randbytes(rng.choice([0, 32])),
        members=tuple(member() for _ in range(rng.randint(0, 4))),
        entries=tuple(Entry(rng.choice(nodes), rng.randrange(2**33), rng.randrange(1, 2**20),
                            f"units/u{rng.randrange(64)}", value()) for _ in range(rng.randint(0, 4))),
        full_members=tuple(member() for _ in range(rng.randint(0, 3))),
        digest=tuple(DigestItem(rng.choice(nodes), rng.randrange(2**33), rng.randrange(2**20))
                     for _ in range(rng.randint(0, 4))),
        deltas=tuple(DeltaPart(rng.choice(nodes), rng.randrange(2**33), base, base + rng.randint(0, 8),
                               tuple((f"units/u{i}", base + i + 1, value()) for i in range(rng.randint(0, 3))))
                     for base in [rng.randrange(2**20) for _ in range(rng.randint(0, 2))]),
    )
    return body_of(msg)


def gossip_body(rng: random.Random) -> Any:
    from bessgw.federation.wire import MsgType

    if rng.random() < 0.5:
        return gossip_message(rng)

    body: dict[Any, Any] = {"t": rng.choice([int(t) for t in MsgType] + [99, -1])}
    fields = {
        "q": lambda: rng.choice([0, 1, 2**31, 2**64 - 1, -1]),
        "tg": lambda: rng.choice(["fz1", "", "x" * 300, "gw-fuzz"]),
        "a": lambda: rng.choice([["127.0.0.1", 9], ["::1", 70000], [], ["a"], "x"]),
        "r": lambda: rng.choice([True, 1, "y"]),
        "j": lambda: rng.choice([True, 0]),
        "mh": lambda: rng.randbytes(rng.choice([0, 8, 32, 64])),
        "sh": lambda: rng.randbytes(rng.choice([0, 8, 32])),
        "m": lambda: [[f"fz{rng.randrange(50)}", "127.0.0.1", rng.randrange(70000), rng.randrange(2**40),
                       rng.randrange(5), rng.randrange(2**33), {}][: rng.randint(0, 7)]
                      for _ in range(rng.randint(0, 4))],
        "d": lambda: [[f"fz{rng.randrange(5)}", rng.randrange(2**33), f"units/u{rng.randrange(9)}",
                       rng.randrange(2**20), rng.choice([None, {"p_kw": 1.0}, {"x" * 40: [1] * 40}, "v"])]
                      [: rng.randint(0, 5)] for _ in range(rng.randint(0, 4))],
        "ms": lambda: [[f"fz{rng.randrange(50)}", "127.0.0.1", 9, 1, 0, 1]],
        "dg": lambda: [[f"fz{rng.randrange(5)}", rng.randrange(2**33), rng.randrange(2**20)][: rng.randint(0, 3)]
                       for _ in range(rng.randint(0, 5))],
        "dp": lambda: [[f"fz{rng.randrange(5)}", rng.randrange(2**33), rng.randrange(100), rng.randrange(100),
                        [[f"k{i}", i, None] for i in range(rng.randint(0, 3))]][: rng.randint(0, 5)]],
    }
    for key in rng.sample(sorted(fields), rng.randint(0, 4)):
        body[key] = fields[key]()
    if rng.random() < 0.1:
        body[rng.choice([1, "zz", "t"])] = nasty_json(rng)
    return body


async def _gossip(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    import base64
    import socket as socketlib

    from bessgw.config import FederationSection
    from bessgw.federation.boot import boot_stamp
    from bessgw.federation.crypto import KeyRing
    from bessgw.federation.node import GossipNode
    from bessgw.federation.wire import MsgType, Status, pack

    key = bytes(range(32))
    settings = FederationSection(bind_host="127.0.0.1", bind_port=0, keys=[base64.b64encode(key).decode()],
                                 bad_log_interval_s=0.0)
    node = GossipNode("gw-fuzz", settings, keys=[key], log=structlog.get_logger("fuzz"))
    await node.start()
    task = asyncio.create_task(node.run())
    ring = KeyRing([key])
    sock = socketlib.socket(socketlib.AF_INET, socketlib.SOCK_DGRAM)
    sock.setblocking(False)
    assert node.addr is not None
    target = ("127.0.0.1", node.addr[1])
    seqs: dict[str, int] = {}
    boot = boot_stamp(time.time())
    to, to_boot = node.id, node.boot  # wire format 2: every datagram names its receiver and its boot
    good = ring.seal(pack(["fz1", boot, 1, to, to_boot, {"t": int(MsgType.PING), "q": 1}]))
    try:
        for index in range(count):
            if index == int(count * WARM_UP_SHARE):
                stats.rss_warm_mb = rss_mb()
            roll = rng.random()
            if roll < 0.6:  # authentic: sealed with the campus key, fresh seq, fuzzed body
                # mostly a valid envelope (so the body reaches membership and state), sometimes not
                odd = rng.random() < 0.2
                sender = rng.choice(["x" * rng.choice([1, 64, 300]), "", "gw-fuzz", "fz1"] if odd
                                    else [f"fz{i}" for i in range(8)])
                seqs[sender] = seqs.get(sender, 0) + (rng.choice([0, -1, 1000]) if odd else 1)
                envelope = [sender, rng.choice([0, 2**63, boot]) if odd else boot, seqs[sender],
                            rng.choice(["", "other", to]) if odd else to,
                            rng.choice([0, 1, 2**63, to_boot]) if odd else to_boot, gossip_body(rng)]
                version = 2
                if rng.random() < 0.5:  # version 3 and later: the sender's range after to_boot
                    version = rng.choice([3, 3, 3, 4, 15])
                    envelope.insert(5, rng.choice([[2, 3, 3], [2, 3, 3], [4, 4, 5], [3, 2, 1], [], "x", [2**64]]))
                    if rng.random() < 0.2:
                        envelope[-1] = {**envelope[-1], rng.choice(["!zz", "zz"]): 1} if isinstance(
                            envelope[-1], dict) else envelope[-1]
                if rng.random() < 0.05:
                    envelope = envelope[: rng.randint(0, 7)]
                try:
                    plaintext = pack(envelope)
                except (ValueError, TypeError, OverflowError):
                    plaintext = b"\x90"
                if rng.random() < 0.1:
                    plaintext = mutate_bytes(rng, plaintext, 3)
                data = ring.seal(plaintext, version)
            elif roll < 0.8:
                data = mutate_bytes(rng, good, 3)
            elif roll < 0.9:
                data = good  # a replay
            else:
                data = rng.randbytes(rng.randint(0, 1500))
            stats.inputs += 1
            sock.sendto(data, target)
            await asyncio.sleep(0)  # the node's reader runs on the next turn of the loop
            if index % 1000 == 999:
                await asyncio.sleep(0.005)
                if task.done():
                    stats.crash("node task ended", repr(task.exception()))
                    break
        deadline = time.monotonic() + 5
        while node.transport.counters.received_datagrams < stats.inputs and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # let the last datagrams in (bounded)
        stats.outcomes["delivered"] = node.transport.counters.received_datagrams  # the rest the kernel dropped
        internal = node.drops.get("internal", 0)
        for _ in range(internal):
            stats.crash("internal drop (handler bug)", "see tracebacks")
        for reason, n in sorted(node.drops.items()):
            stats.outcomes[f"drop_{reason}"] = n
        stats.outcomes["accepted"] = stats.outcomes["delivered"] - sum(node.drops.values())
        # still answering: a real peer joining through it is seen alive
        peer = GossipNode("fz-peer", FederationSection(bind_host="127.0.0.1", bind_port=0,
                                                       keys=[base64.b64encode(key).decode()],
                                                       seeds=[f"127.0.0.1:{target[1]}"]), keys=[key],
                          log=structlog.get_logger("fuzz"))
        peer_task = asyncio.create_task(peer.run())
        deadline = time.monotonic() + 10
        while True:
            member = node.membership.members.get("fz-peer") if node.membership else None
            if member is not None and member.status is Status.ALIVE:
                stats.outcome("peer_joined_after")
                break
            if time.monotonic() > deadline:
                stats.crash("node stopped answering", "a fresh peer could not join within 10 s")
                break
            await asyncio.sleep(0.05)
        peer_task.cancel()
        await asyncio.gather(peer_task, return_exceptions=True)
    finally:
        sock.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def fuzz_gossip(count: int, rng: random.Random, stats: Stats, hang_s: float) -> None:
    asyncio.run(_gossip(count, rng, stats, hang_s))


# ------------------------------------------------------------------------------------------ main

Runner = Callable[[int, random.Random, Stats, float], None]
SURFACES: dict[str, Runner | None] = {
    "config": fuzz_config,
    "admin": fuzz_admin,
    "modbus": fuzz_modbus,
    "can": fuzz_can,
    "gossip": fuzz_gossip,
    "opcua": None,  # OPC UA method arguments and writes: registered by their own harness
}


def register_surface(name: str, runner: Runner) -> None:
    """Hook for surfaces fuzzed elsewhere (OPC UA methods): ``runner(count, rng, stats, hang_s)``."""
    SURFACES[name] = runner


def run_surface(name: str, count: int, seed: int, hang_s: float, counter: TracebackCounter) -> Stats:
    stats = Stats(name)
    runner = SURFACES[name]
    if runner is None:
        stats.examples.append("not fuzzed here: no runner registered (register_surface)")
        return stats
    before = counter.count
    start = time.perf_counter()
    stats.rss_warm_mb = rss_mb()
    runner(count, random.Random(f"{name}:{seed}"), stats, hang_s)
    stats.seconds = round(time.perf_counter() - start, 1)
    stats.rss_end_mb = round(rss_mb(), 1)
    stats.rss_warm_mb = round(stats.rss_warm_mb, 1)
    stats.tracebacks = counter.count - before
    stats.examples += counter.samples[:3]
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--surface", default="all", choices=[*SURFACES, "all"])
    parser.add_argument("--count", type=int, default=10_000, help="inputs per surface")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hang-s", type=float, default=5.0, help="an input not handled within this is a hang")
    args = parser.parse_args(argv)
    counter = install_log_capture()
    names = [name for name in SURFACES if SURFACES[name] is not None] if args.surface == "all" else [args.surface]
    results = []
    for name in names:
        stats = run_surface(name, args.count, args.seed, args.hang_s, counter)
        results.append(stats)
        print(f"{name:8} inputs {stats.inputs:>8}  crashes {stats.crashes}  hangs {stats.hangs}  tracebacks "
              f"{stats.tracebacks}  rss {stats.rss_warm_mb:.1f} -> {stats.rss_end_mb:.1f} MB "
              f"({stats.rss_growth_mb:+.1f})  {stats.seconds:.0f} s  {json.dumps(stats.outcomes)}", flush=True)
        for example in stats.examples:
            print(f"    {example}", flush=True)
    print(json.dumps({"bench": "fuzz", "seed": args.seed, "count": args.count,
                      "surfaces": {s.surface: s.as_dict() for s in results}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
