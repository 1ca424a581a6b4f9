"""The ``bessgw`` command line. Command names, flags and exit codes are contracts other tooling relies on.

Exit codes (:data:`EXIT_CODES`, the README's table, checked by a test): 0 success; 78 (EX_CONFIG) invalid
or unreadable configuration; 70 (EX_SOFTWARE) broken plugin set-up, an unreachable gateway or another
reported error; 69 / 65 campus refusals; 73 (EX_CANTCREAT) unit files that cannot be installed; 2
command-line usage error (argparse, every command); 130 Ctrl-C. ``BessgwError`` is printed without a
traceback; any other exception is a bug and keeps its traceback. A reader that closes the pipe early
(``bessgw status | head -1``) ends the command quietly with 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from bessgw import __version__
from bessgw.config import Config, config_json_schema, load_config
from bessgw.config.preflight import Preflight, preflight
from bessgw.errors import BessgwError, ConfigError
from bessgw.model.timestamp import local_iso
from bessgw.plugin.manager import PluginManager, PluginRegistry, build_plugin_manager
from bessgw.plugin.roles import SimulatorContext

#: every command's documented exit codes (the README's table says the same; tests/unit/test_readme.py checks
#: it). Besides these, every command exits 2 on a usage error and 130 on Ctrl-C.
EXIT_CODES: dict[str, tuple[int, ...]] = {
    "--version": (0,),
    "plugins list": (0,),
    "check-config": (0, 78),
    "config-schema": (0,),
    "run": (0, 70, 78),
    "status": (0, 70, 78),
    "setpoint": (0, 70, 78),
    "release": (0, 70, 78),
    "journal tail": (0, 70, 78),
    "members": (0, 70, 78),
    "campus setpoint": (0, 65, 69, 70, 78),
    "campus release": (0, 69, 70, 78),
    "campus status": (0, 69, 70, 78),
    "hash-password": (0, 2),
    "sim": (0, 2),
    "install-service": (0, 73),
}

#: extra plugin modules to load besides the installed entry points (comma-separated import names);
#: lets a plugin author try a plugin without packaging it, and tests load fixture plugins with it
PLUGINS_ENV = "BESSGW_PLUGINS"


def load_plugins() -> tuple[PluginManager, PluginRegistry]:
    """Build the plugin manager from entry points plus ``$BESSGW_PLUGINS`` and collect it."""
    extra = [part.strip() for part in os.environ.get(PLUGINS_ENV, "").split(",") if part.strip()]
    pm = build_plugin_manager(load_entry_points=True, modules=extra)
    return pm, pm.collect()


def _cmd_plugins_list(args: argparse.Namespace) -> int:
    _pm, registry = load_plugins()
    rows = [report.as_dict() for report in registry.reports]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = ["kind", "name", "plugin", "version", "api_version", "status"]
    table = [headers] + [[row[h] for h in headers] for row in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(headers))]
    for row in table:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['name']}: {row['status']}: {row['reason']}", file=sys.stderr)
    return 0


def _preflight(path: Path, config: Config, *, skip_files: bool = False, starting: bool = False) -> None:
    """Run the pre-flight checks; print what was skipped, raise ``ConfigError`` (exit 78) on problems."""
    report = _checked(path, config, skip_files=skip_files, starting=starting)
    for line in report.skipped:
        print(f"{path}: skipped: {line}", file=sys.stderr)
    if report.problems:
        raise ConfigError(str(path), list(report.problems))


def _checked(path: Path, config: Config, *, skip_files: bool = False, starting: bool = False) -> Preflight:
    """Pre-flight, and what the services would refuse (``daemon.services.config_problems``)."""
    from bessgw.daemon.services import config_problems

    report = preflight(config, str(path), skip_files=skip_files, starting=starting)
    problems = config_problems(config, str(path))
    return replace(report, problems=(*report.problems, *problems)) if problems else report


def _cmd_check_config(args: argparse.Namespace) -> int:
    _pm, registry = load_plugins()
    path = Path(args.path)
    try:
        config = load_config(path, registry, read_files=not args.skip_files)
        report = _checked(path, config, skip_files=args.skip_files)
    except ConfigError as err:
        if not args.json:
            raise
        print(json.dumps({"ok": False, "problems": err.problems}))
        return err.exit_code
    if args.json:
        print(json.dumps({"ok": not report.problems, "problems": list(report.problems),
                          "skipped": list(report.skipped)}))
        return ConfigError.exit_code if report.problems else 0
    for line in report.skipped:
        print(f"{path}: skipped: {line}", file=sys.stderr)
    if report.problems:
        raise ConfigError(str(path), list(report.problems))
    print("ok")
    return 0


def _cmd_config_schema(args: argparse.Namespace) -> int:
    _pm, registry = load_plugins()
    print(json.dumps(config_json_schema(registry), indent=2))
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from bessgw.daemon import exit_process, run_gateway
    from bessgw.daemon.logsetup import configure_logging

    pm, registry = load_plugins()
    path = Path(args.config)
    config = load_config(path, registry)
    _preflight(path, config, starting=True)  # never start without a part the config asks for
    configure_logging(config.gateway.log_level, config.gateway.log_format)
    _migrate_state_dir(path, config)
    from bessgw.daemon.tracing import configure_tracing, shutdown_tracing

    configure_tracing(config.tracing)
    try:
        code = run_gateway(path, config, pm, registry)
    finally:
        shutdown_tracing()
    exit_process(code)  # the stop was clean: skip the interpreter's teardown (see its docstring)


def _migrate_state_dir(path: Path, config: Config) -> None:
    """Bring an older release's state directory to this release's layout before anything uses it."""
    import structlog

    from bessgw.config.state_version import StateVersionProblem
    from bessgw.control.journal import migrate_state_dir

    try:
        found, now = migrate_state_dir(config.gateway.state_dir, config.control.journal_file)
    except StateVersionProblem as err:
        raise ConfigError(str(path), [f"{path}: gateway.state_dir: {err}"]) from None
    if found != now:
        structlog.get_logger("bessgw").info("state_dir_migrated", state_dir=str(config.gateway.state_dir),
                                            from_version=found, to_version=now)


#: where the systemd unit puts the config; commands that ask a running gateway default to it
DEFAULT_CONFIG = "/etc/bessgw/bessgw.toml"


def _cmd_journal_tail(args: argparse.Namespace) -> int:
    from bessgw.config.state_version import StateVersionProblem, read_state_version
    from bessgw.control.journal import tail_text

    config = load_config(Path(args.config))
    try:
        read_state_version(config.gateway.state_dir)  # a newer release's journal is not ours to read
    except StateVersionProblem as err:
        raise ConfigError(args.config, [f"{args.config}: gateway.state_dir: {err}"]) from None
    text = tail_text(config.gateway.state_dir, args.lines, args.json, config.control.journal_file)
    if text:
        print(text)
    return 0


def _lenient_gateway(config_path: Path) -> tuple[str, Path] | None:
    """``(gateway id, state_dir)`` as an invalid config still writes them, or ``None`` if it does not."""
    from bessgw.config import read_toml
    from bessgw.config.schema import GatewaySection

    try:
        gateway = read_toml(config_path).get("gateway")
    except ConfigError:
        return None
    if not isinstance(gateway, dict):
        return None
    try:
        section = GatewaySection.model_validate({"id": gateway.get("id"),
                                                 "state_dir": gateway.get("state_dir", "/var/lib/bessgw")})
    except ValueError:  # pydantic's ValidationError is one
        return None
    state_dir = section.state_dir if section.state_dir.is_absolute() else (config_path.parent / section.state_dir)
    return section.id, state_dir.resolve()


def _ask(config_path: str, payload: dict) -> dict:
    """Send one admin request to the gateway whose config is ``config_path``; errors as BessgwError.

    Only ``gateway.id`` and ``gateway.state_dir`` are needed to find the gateway: when the file no longer
    validates (an edit in progress, whose reload the gateway rejected and which it does not run), the running
    gateway is still asked, with a warning; an operator must be able to see and command it then. The config
    error is raised when that gateway does not answer either."""
    from bessgw.daemon.admin import AdminError, reply_version, request, socket_path

    invalid: ConfigError | None = None
    try:
        config = load_config(Path(config_path), read_files=False)  # the key files are the gateway's business
        gateway_id, state_dir = config.gateway.id, config.gateway.state_dir
    except ConfigError as err:
        found = _lenient_gateway(Path(config_path))
        if found is None:
            raise
        invalid, (gateway_id, state_dir) = err, found
    path = socket_path(state_dir)
    try:
        reply = request(path, payload)
    except (OSError, ValueError) as err:
        if invalid is not None:
            raise invalid from None
        raise BessgwError(f"cannot reach the gateway {gateway_id!r} at {path}: {err}"
                          " (is it running, and may you read its state directory?)") from err
    if invalid is not None:
        print(f"{config_path}: warning: the file is not a valid config ({len(invalid.problems)} problem(s); "
              f"bessgw check-config lists them); asked the running gateway {gateway_id!r} anyway", file=sys.stderr)
    if not isinstance(reply, dict):
        raise BessgwError(f"gateway {gateway_id!r}: the reply is not a JSON object")
    try:
        reply_version(reply)
    except AdminError as err:
        raise BessgwError(f"gateway {gateway_id!r}: {err}") from None
    if not reply.get("ok"):
        error = BessgwError(f"gateway {gateway_id!r}: {reply.get('error', 'request failed')}")
        code = reply.get("exit_code")
        if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 256:
            error.exit_code = code  # the gateway says what kind of refusal it was (e.g. 69: campus unavailable)
        raise error
    return reply


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    """Aligned text columns as wide as their widest cell (unit ids of any length); ``right``: numeric columns."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if index in right else cell.ljust(width)
                         for index, (cell, width) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return [line(headers)] + [line(row) for row in rows]


def _duration(seconds: float) -> str:
    """``3 h 05 min``, ``4 min 10 s``, ``12 s``: an uptime a person reads at a glance."""
    seconds = int(seconds)
    if seconds >= 86400:
        return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def status_text(reply: dict) -> str:
    """What ``bessgw status`` prints for one status reply of the admin socket."""
    started = time.time() - reply["uptime_s"]
    lines = [f"gateway {reply['gateway']}  version {reply['version']}  pid {reply['pid']}"
             f"  up {_duration(reply['uptime_s'])} (since {local_iso(started)})"]
    control = reply.get("control")
    if control:
        lines.append(f"control: {control['mode']}  source {control['source'] or '-'}"
                     f"  target {_kw(control['target_p_kw'])} kW  delivered {_kw(control['delivered_p_kw'])} kW"
                     f"  ({control['reason']})")
    rows = [[unit["id"], unit["quality"], unit["state"],
             "-" if unit["soc_pct"] is None else f"{unit['soc_pct']:.1f}", _kw(unit["p_kw"]),
             f"{unit['age_s']:.1f}", unit["reason"] or ""] for unit in reply["units"]]
    lines += _table(["unit", "quality", "state", "soc %", "p kW", "age s", "reason"], rows, frozenset({3, 4, 5}))
    return "\n".join(lines)


def _cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        reply = _ask(args.config, {"cmd": "status"})
        print(json.dumps(reply, indent=2) if args.json else status_text(reply))
        return 0
    # --watch: a fresh report every N s until Ctrl-C; on a terminal in place, otherwise one after another
    tty = sys.stdout.isatty()
    interval_s = max(0.2, args.watch)
    try:
        while True:
            reply = _ask(args.config, {"cmd": "status"})
            if args.json:
                print(json.dumps(reply), flush=True)  # one JSON object a line (JSON Lines)
            else:
                head = f"every {interval_s:g} s, Ctrl-C ends  {local_iso(time.time(), 'milliseconds')}"
                text = f"{head}\n{status_text(reply)}"
                print(f"\x1b[H\x1b[2J{text}" if tty else f"{text}\n", flush=True)
            time.sleep(interval_s)
    except KeyboardInterrupt:
        return 0


def _cmd_setpoint(args: argparse.Namespace) -> int:
    payload = {"cmd": "setpoint", "p_kw": args.p_kw, "q_kvar": args.q_kvar}
    if args.id:
        payload["command_id"] = args.id
    if args.expires_in_s is not None:
        payload["expires_in_s"] = args.expires_in_s
    result = _ask(args.config, payload)["result"]
    print(json.dumps(result) if args.json else
          f"accepted {result['command_id']}: {result['applied_p_kw']} kW / {result['applied_q_kvar']} kvar"
          f" (requested {result['requested_p_kw']} kW){' - ' + result['note'] if result['note'] else ''}")
    if not args.hold:
        return 0
    _hold(args)
    return 0


def _hold(args: argparse.Namespace) -> None:
    """``setpoint --hold``: heartbeat the local source until Ctrl-C (or SIGTERM, SIGHUP), then release it.

    On a terminal one status line, refreshed every second, shows that the override is alive: what the
    gateway targets and delivers, who controls it, when the last heartbeat was answered. SIGTERM (a
    ``kill``, a service manager) and SIGHUP (the SSH session closed) end it like Ctrl-C: the override
    is released at once, not left to the source's heartbeat timeout.
    """
    tty = sys.stdout.isatty()
    refresh_s = min(1.0, args.heartbeat_s)
    next_beat = time.monotonic() + args.heartbeat_s

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        try:
            while True:
                time.sleep(refresh_s)
                if time.monotonic() >= next_beat:
                    _ask(args.config, {"cmd": "heartbeat"})
                    next_beat = time.monotonic() + args.heartbeat_s
                if tty:
                    print(f"\r\x1b[K{_hold_line(_ask(args.config, {'cmd': 'status'}))}", end="", flush=True)
        finally:
            if tty:
                print(flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        # also when the output pipe closed or a heartbeat failed: the override must not outlive this command
        result = _ask(args.config, {"cmd": "release"})["result"]
        with contextlib.suppress(BrokenPipeError):
            print(f"released ({result['command_id']})", flush=True)


def _hold_line(reply: dict) -> str:
    control = reply.get("control") or {}
    source = control.get("source") or control.get("mode", "?")
    return (f"holding: {source}  target {_kw(control.get('target_p_kw'))} kW"
            f"  delivered {_kw(control.get('delivered_p_kw'))} kW  at {time.strftime('%H:%M:%S %Z')}"
            "  (Ctrl-C releases)")


def _cmd_release(args: argparse.Namespace) -> int:
    result = _ask(args.config, {"cmd": "release"})["result"]
    print(json.dumps(result) if args.json else f"released the local setpoint ({result['command_id']})")
    return 0


def _cmd_campus_setpoint(args: argparse.Namespace) -> int:
    import uuid

    command_id = args.id or f"cli-{uuid.uuid4().hex}"  # chosen here, so a timed-out command can be repeated
    payload: dict = {"cmd": "campus_setpoint", "p_kw": args.p_kw, "q_kvar": args.q_kvar, "command_id": command_id}
    if args.expires_in_s is not None:
        payload["expires_in_s"] = args.expires_in_s
    result = _ask(args.config, payload)["result"]
    if args.json:
        print(json.dumps(result))
    else:
        what = "already committed" if result["duplicate"] else "committed"
        print(f"campus setpoint {result['command_id']} {what} at etcd revision {result['revision']}:"
              f" {args.p_kw:g} kW / {args.q_kvar:g} kvar (bessgw campus status shows the shares)")
    return 0


def _cmd_campus_release(args: argparse.Namespace) -> int:
    result = _ask(args.config, {"cmd": "campus_release"})["result"]
    if args.json:
        print(json.dumps(result))
        return 0
    print("released the campus setpoint" if result["released"] else "there was no campus setpoint",
          f"(etcd revision {result['revision']})")
    return 0


def _cmd_campus_status(args: argparse.Namespace) -> int:
    status = _ask(args.config, {"cmd": "campus_status"})["campus"]
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    from bessgw.campus.commands import format_status

    print(format_status(status))
    return 0


def _cmd_members(args: argparse.Namespace) -> int:
    members = _ask(args.config, {"cmd": "members"})["members"]
    if args.json:
        print(json.dumps(members, indent=2))
        return 0
    from bessgw.federation.admin import format_members

    print(format_members(members))
    return 0


def _cmd_hash_password(args: argparse.Namespace) -> int:
    """Prompt twice (no echo) and print the hash for ``[[northbound.opcua.users]] password_hash``."""
    import getpass

    from bessgw.northbound.passwords import hash_password

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("bessgw hash-password: the two passwords differ", file=sys.stderr)
            return 2
    if len(password) < 8:
        print("bessgw hash-password: use at least 8 characters", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def _cmd_install_service(args: argparse.Namespace) -> int:
    from bessgw.daemon import install

    prefix = Path(args.prefix) if args.prefix else install.default_prefix()
    files = install.render(prefix, Path(args.dest), Path(args.sysusers_dest))
    if args.dry_run:
        for item in files:
            print(f"# ---- {item.path}\n{item.text}")
        return 0
    install.write(files)
    for item in files:
        print(f"wrote {item.path}")
    print(install.NEXT_STEPS)
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from bessgw.daemon.logsetup import configure_logging

    _pm, registry = load_plugins()
    spec = registry.simulators.get(args.name)
    if spec is None:
        known = ", ".join(sorted(registry.simulators)) or "none installed"
        print(f"bessgw sim: unknown simulator {args.name!r} (installed: {known})", file=sys.stderr)
        return 2
    try:
        sim_args = spec.parse_args(list(args.args))
    except ValueError as err:
        print(f"bessgw sim {args.name}: {err}", file=sys.stderr)
        return 2
    configure_logging(args.log_level, "auto", stream=sys.stderr)  # stdout says "ready"
    import structlog

    log = structlog.get_logger("bessgw.sim").bind(simulator=args.name)

    def ready() -> None:
        print("ready", flush=True)

    async def main() -> None:
        task = asyncio.ensure_future(
            spec.run(sim_args, SimulatorContext(chemistries=registry.chemistries, ready=ready, log=log))
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise

    asyncio.run(main())
    return 0


def _seconds(max_s: float) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds in (0, ``max_s``]. ``inf`` ended ``status --watch`` in an
    OverflowError traceback, a negative ``--heartbeat-s`` in a ValueError one, and 0 or ``nan`` made
    ``setpoint --hold`` heartbeat in a busy loop or never."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
        if not (math.isfinite(value) and 0 < value <= max_s):
            raise argparse.ArgumentTypeError(f"must be a number of seconds in (0, {max_s:g}] (got {text[:40]!r})")
        return value
    return parse


#: the most journal entries one ``journal tail`` prints
MAX_TAIL_LINES = 1_000_000


def _entries(text: str) -> int:
    """An argparse type for ``journal tail -n``: 1 to :data:`MAX_TAIL_LINES` (a 23-digit count ended in an
    OverflowError traceback from SQLite, a negative one printed nothing and exited 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text[:40]!r}") from None
    if not 1 <= value <= MAX_TAIL_LINES:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_TAIL_LINES} (got {text[:40]})")
    return value


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config`` of the commands that ask a running gateway (default: where the systemd unit looks)."""
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"the gateway's config (default {DEFAULT_CONFIG})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bessgw", description="Gateway daemon for battery storage campuses")
    parser.add_argument("--version", action="version", version=f"bessgw {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    plugins = commands.add_parser("plugins", help="inspect installed plugins")
    plugin_commands = plugins.add_subparsers(dest="plugins_command", metavar="SUBCOMMAND")
    listing = plugin_commands.add_parser("list", help="kind, name, version, API version and status of each")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=_cmd_plugins_list)

    check = commands.add_parser(
        "check-config", help="validate a config file without starting (exit 0 or 78)",
        description="Validate a config file: schema, plugins, and what can be known before start on this "
                    "machine (state directory, named files, free ports, timeouts). Exit 0 or 78.")
    check.add_argument("path", help="the TOML config file")
    check.add_argument("--skip-files", action="store_true",
                       help="the config is for another machine: do not read the files it names, inspect its "
                            "state directory or probe its ports (each skip is listed)")
    check.add_argument("--json", action="store_true", help='print {"ok": ..., "problems": [...], "skipped": [...]}')
    check.set_defaults(handler=_cmd_check_config)

    schema = commands.add_parser(
        "config-schema", help="print the JSON Schema of the config with every installed plugin's options (editors)")
    schema.set_defaults(handler=_cmd_config_schema)

    run = commands.add_parser("run", help="run the gateway")
    run.add_argument("--config", required=True, help="the TOML config file")
    run.set_defaults(handler=_cmd_run)

    journal = commands.add_parser("journal", help="the durable command journal")
    journal_commands = journal.add_subparsers(dest="journal_command", metavar="SUBCOMMAND")
    tail = journal_commands.add_parser("tail", help="the last accepted commands, oldest first")
    _add_config_option(tail)
    tail.add_argument("--json", action="store_true", help="one JSON object per line")
    tail.add_argument("-n", "--lines", type=_entries, default=20, help="how many entries (default 20)")
    tail.set_defaults(handler=_cmd_journal_tail)

    status = commands.add_parser("status", help="units, control and services of a running gateway")
    _add_config_option(status)
    status.add_argument("--json", action="store_true", help="machine-readable output (with --watch: JSON Lines)")
    status.add_argument("--watch", nargs="?", type=_seconds(86400.0), const=2.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 2) until Ctrl-C, in place on a terminal")
    status.set_defaults(handler=_cmd_status)

    setpoint = commands.add_parser("setpoint", help="set the local operator override target of a running gateway")
    _add_config_option(setpoint)
    setpoint.add_argument("--p-kw", type=float, required=True, help="active power, > 0 discharges, < 0 charges")
    setpoint.add_argument("--q-kvar", type=float, default=0.0, help="reactive power")
    setpoint.add_argument("--id", help="command id (repeating an id has no further effect); default: random")
    setpoint.add_argument("--expires-in-s", type=float, help="the setpoint ends after this many seconds")
    setpoint.add_argument("--hold", action="store_true",
                          help="keep the local source alive until Ctrl-C, then release it")
    setpoint.add_argument("--heartbeat-s", type=_seconds(3600.0), default=5.0,
                          help="heartbeat period with --hold (keep it below the local source's heartbeat_timeout_s)")
    setpoint.add_argument("--json", action="store_true", help="print the journaled result as JSON")
    setpoint.set_defaults(handler=_cmd_setpoint)

    release = commands.add_parser("release", help="withdraw the local operator override")
    _add_config_option(release)
    release.add_argument("--json", action="store_true", help="print the journaled result as JSON")
    release.set_defaults(handler=_cmd_release)

    members = commands.add_parser("members", help="the federation membership table of a running gateway")
    _add_config_option(members)
    members.add_argument("--json", action="store_true", help="machine-readable output")
    members.set_defaults(handler=_cmd_members)

    campus = commands.add_parser("campus", help="campus dispatch through etcd: one setpoint for the whole campus")
    campus_commands = campus.add_subparsers(dest="campus_command", metavar="SUBCOMMAND")
    campus_setpoint = campus_commands.add_parser(
        "setpoint", help="commit the campus setpoint (exit 0 once committed, 69 when the campus cannot commit it)")
    _add_config_option(campus_setpoint)
    campus_setpoint.add_argument("--p-kw", type=float, required=True,
                                 help="campus active power, > 0 discharges, < 0 charges")
    campus_setpoint.add_argument("--q-kvar", type=float, default=0.0, help="campus reactive power")
    campus_setpoint.add_argument("--id", help="command id, one effect campus-wide (default: random)")
    campus_setpoint.add_argument("--expires-in-s", type=float, help="the campus setpoint ends after this many seconds")
    campus_setpoint.add_argument("--json", action="store_true", help="print the result as JSON")
    campus_setpoint.set_defaults(handler=_cmd_campus_setpoint)
    campus_release = campus_commands.add_parser("release", help="delete the campus setpoint: every share goes to 0")
    _add_config_option(campus_release)
    campus_release.add_argument("--json", action="store_true", help="print the result as JSON")
    campus_release.set_defaults(handler=_cmd_campus_release)
    campus_status = campus_commands.add_parser(
        "status", help="setpoint, allocator, every gateway's share, lease and delivered kW, the shortfall")
    _add_config_option(campus_status)
    campus_status.add_argument("--json", action="store_true", help="machine-readable output")
    campus_status.set_defaults(handler=_cmd_campus_status)

    hashing = commands.add_parser("hash-password", help="hash a password for an OPC UA user in the config")
    hashing.add_argument("--stdin", action="store_true", help="read the password from standard input (scripts)")
    hashing.set_defaults(handler=_cmd_hash_password)

    install = commands.add_parser(
        "install-service", help="write the systemd unit files and sysusers entry for this installation (as root)")
    install.add_argument("--prefix", help="the installation whose bin/bessgw the units run"
                         " (default: the one running this command, e.g. /opt/bessgw)")
    install.add_argument("--dest", default="/etc/systemd/system", help="where the unit files go (default %(default)s)")
    install.add_argument("--sysusers-dest", default="/etc/sysusers.d",
                         help="where the sysusers entry bessgw.conf goes (default %(default)s)")
    install.add_argument("--dry-run", action="store_true", help="print the files instead of writing them")
    install.set_defaults(handler=_cmd_install_service)

    sim = commands.add_parser("sim", help="run a device simulator shipped by a plugin", add_help=True)
    sim.add_argument("name", help="simulator name (see `bessgw plugins list`)")
    sim.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sim.add_argument("args", nargs=argparse.REMAINDER, help="the simulator's own options")
    sim.set_defaults(handler=_cmd_sim)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = handler(args)
        sys.stdout.flush()  # inside the try: a closed pipe is noticed here, not at interpreter exit
        return code
    except BrokenPipeError:
        # the reader has what it wanted (`bessgw status | head -1`); Python's exit flush must not complain
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except BessgwError as err:
        print(str(err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
