"""Reading, validating and explaining a config file: the error lines a site engineer acts on."""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bessgw.config.base import HOST, IDENTIFIER
from bessgw.config.files import MAX_CONFIG_BYTES, FileProblem, read_bounded
from bessgw.config.schema import Config
from bessgw.config.southbound import UnitSection
from bessgw.errors import ConfigError
from bessgw.plugin.manager import PluginRegistry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


#: a key longer than this is shown cut (an unknown key of 1 MB made a 1 MB error line)
MAX_KEY_CHARS = 64


def _key_path(loc: Iterable[Any]) -> str:
    """pydantic's ``loc`` as the engineer wrote it: ``('units', 3, 'modbus', 'port')`` -> ``units[3].modbus.port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "tagged-union")):
            continue
        else:
            text = str(part) if len(str(part)) <= MAX_KEY_CHARS else str(part)[:MAX_KEY_CHARS - 3] + "..."
            out += f".{text}" if out else text
    return out or "(top level)"


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


#: the shared patterns in words (pydantic's message quotes the regular expression)
_PATTERN_WORDS = {
    IDENTIFIER: "expected 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit",
    HOST: "expected a host name or an IP address (no spaces or control characters)",
}


#: error lines shown for one file; the rest are counted in one last line (a generated file with 100,000
#: broken units printed 200,000 lines)
MAX_PROBLEM_LINES = 100


def format_validation_error(path: str, err: ValidationError, prefix: tuple[Any, ...] = ()) -> list[str]:
    """One line per pydantic error: ``file: key.path: message (got value)``; at most
    :data:`MAX_PROBLEM_LINES`, then one line saying how many more there are."""
    lines = []
    errors = err.errors(include_url=False)
    if len(errors) > MAX_PROBLEM_LINES:
        more = len(errors) - MAX_PROBLEM_LINES
        errors = errors[:MAX_PROBLEM_LINES]
    else:
        more = 0
    for item in errors:
        loc = prefix + tuple(item.get("loc", ()))
        message = item["msg"]
        if item["type"] == "string_pattern_mismatch":
            message = _PATTERN_WORDS.get((item.get("ctx") or {}).get("pattern", ""), message)
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; `bessgw config-schema` lists every key)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif "input" in item and item["type"] not in ("model_type", "dict_type"):
            message += f" (got {_describe(item['input'])})"
        lines.append(f"{path}: {_key_path(loc)}: {message}")
    if more:
        lines.append(f"{path}: ... and {more} more problems like these (fix the ones above first)")
    return lines


_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


#: arrays and tables nested deeper than this are refused (a real config nests four or five levels)
MAX_NESTING = 32


def _too_deep(data: Any) -> tuple[Any, ...] | None:
    """The key path of the first value nested deeper than :data:`MAX_NESTING`, or ``None``.

    Iterative, so that the check itself cannot overflow the stack that pydantic would overflow.
    """
    stack: list[tuple[Any, tuple[Any, ...]]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if len(loc) > MAX_NESTING:
            return loc[:MAX_NESTING + 1]
        if isinstance(value, dict):
            stack.extend((item, loc + (key,)) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, loc + (index,)) for index, item in enumerate(value))
    return None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; syntax errors name the line and column.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES` (a FIFO or a device is refused
    without blocking), nested at most :data:`MAX_NESTING` levels.
    """
    try:
        raw = read_bounded(path, MAX_CONFIG_BYTES)
    except FileProblem as err:
        raise ConfigError(str(path), [f"{path}: {err.reason}"]) from err
    if raw.startswith(codecs.BOM_UTF8):  # Windows editors write one; TOML's grammar has no place for it
        raw = raw[len(codecs.BOM_UTF8):]
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise ConfigError(str(path), [f"{path}: UTF-16 text; save the file as UTF-8"])
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError(str(path), [f"{path}: not UTF-8 text (byte {err.start})"]) from err
    except RecursionError as err:
        raise ConfigError(str(path), [f"{path}: TOML: arrays or tables nested too deeply "
                                      f"(at most {MAX_NESTING} levels)"]) from err
    except tomllib.TOMLDecodeError as err:
        text = str(err)
        match = _TOML_POSITION.match(text)
        if match:
            where = f"line {match['line']}, column {match['col']}"
            text = match["msg"]
        else:
            where = "TOML"
        raise ConfigError(str(path), [f"{path}: {where}: TOML syntax error: {text}"]) from err
    deep = _too_deep(data)
    if deep is not None:
        raise ConfigError(str(path), [f"{path}: {_key_path(deep)}: nested too deeply (at most {MAX_NESTING} levels)"])
    return data


def parse_config(data: dict[str, Any], path: str = "<config>") -> Config:
    """Validate already-parsed TOML data against the core schema."""
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(path, format_validation_error(path, err)) from err
    problems = _unit_timing_problems(config, path)
    if problems:
        raise ConfigError(path, problems)
    return config


#: timing keys of a unit that must be ordered once its own values are merged over ``[defaults]``
_ORDERED_TIMING = (("stale_after_s", "bad_after_s"), ("retry_min_s", "retry_max_s"))


def _unit_timing_problems(config: Config, path: str) -> list[str]:
    """Each unit's own timing merged over ``[defaults]`` must still be ordered (stale before bad, retry
    min before max). Checked here, where the error can name the key that comes from where, because
    :meth:`Config.unit_timing` raises on a disordered merge, and a check-config, start or reload with
    ``stale_after_s = 7`` on a unit and ``bad_after_s = 5`` in ``[defaults]`` ended in a traceback."""
    problems = []
    for index, unit in enumerate(config.units):
        for low_name, high_name in _ORDERED_TIMING:
            own_low, own_high = getattr(unit, low_name), getattr(unit, high_name)
            low = own_low if own_low is not None else getattr(config.defaults, low_name)
            high = own_high if own_high is not None else getattr(config.defaults, high_name)
            if low <= high:
                continue
            low_key = f"units[{index}].{low_name}" if own_low is not None else f"defaults.{low_name}"
            high_key = f"units[{index}].{high_name}" if own_high is not None else f"defaults.{high_name}"
            if own_low is not None:  # name the unit's own key: that is the one to change
                problems.append(f"{path}: {low_key}: {low:g} s must not exceed {high_key} ({high:g} s)")
            else:
                problems.append(f"{path}: {high_key}: {high:g} s must not be below {low_key} ({low:g} s)")
    return problems


def _anchor_paths(config: Config, base: Path) -> Config:
    """Relative ``state_dir``, key and certificate files are relative to the config file, not to the working
    directory (systemd starts us in ``/``; a person runs ``bessgw status`` from anywhere)."""
    gateway = config.gateway
    if not gateway.state_dir.is_absolute():
        gateway = gateway.model_copy(update={"state_dir": (base / gateway.state_dir).resolve()})
    federation = config.federation
    if federation is not None and federation.key_file is not None and not federation.key_file.is_absolute():
        federation = federation.model_copy(update={"key_file": (base / federation.key_file).resolve()})
    campus = config.campus
    if campus is not None and campus.coordination is not None:
        coordination = campus.coordination
        files = {name: getattr(coordination, name) for name in ("ca_file", "cert_file", "key_file")}
        anchored = {name: (base / file).resolve() for name, file in files.items()
                    if file is not None and not file.is_absolute()}
        if anchored:
            campus = campus.model_copy(update={"coordination": coordination.model_copy(update=anchored)})
    return config.model_copy(update={"gateway": gateway, "federation": federation, "campus": campus})


def load_config(path: str | Path, registry: PluginRegistry | None = None, *, read_files: bool = True) -> Config:
    """Read, parse and validate a config file; with ``registry``, also the plugin-specific tables.

    ``read_files=False`` leaves the files the config names unread (a config for another machine).
    """
    path = Path(path)
    config = _anchor_paths(parse_config(read_toml(path), str(path)), path.parent)
    if read_files and config.federation is not None and config.federation.enabled:
        try:  # a missing or malformed key file is a config error, found now rather than at first gossip
            config.federation.campus_keys()
        except ConfigError as err:
            problems = [f"{path}: federation.key_file: {problem}" for problem in err.problems]
            raise ConfigError(str(path), problems) from err
    if registry is not None:
        check_against_plugins(config, registry, str(path))
    return config


def _validate_table(model: type | None, table: dict[str, Any], path: str, loc: tuple[Any, ...]) -> list[str]:
    if model is None:
        if table:
            return [f"{path}: {_key_path(loc)}: this plugin takes no options (got {sorted(table)})"]
        return []
    try:
        model.model_validate(table)  # type: ignore[attr-defined]
    except ValidationError as err:
        return format_validation_error(path, err, loc)
    return []


def plugin_options(config: Config, spec_model: type | None, name: str) -> Any:
    """The validated ``plugins.<name>`` table for a driver (defaults when absent)."""
    if spec_model is None:
        return None
    return spec_model.model_validate(config.plugins.get(name, {}))  # type: ignore[attr-defined]


def unit_options(unit: UnitSection, spec_model: type | None) -> Any:
    """The validated ``units[i].options`` table."""
    if spec_model is None:
        return None
    return spec_model.model_validate(unit.options)  # type: ignore[attr-defined]


def check_against_plugins(config: Config, registry: PluginRegistry, path: str = "<config>") -> None:
    """Second pass: driver names, transport tables and plugin-owned tables, all errors at once."""
    problems: list[str] = []
    drivers = registry.drivers
    installed = ", ".join(sorted(drivers)) or "none installed"
    for index, unit in enumerate(config.units):
        loc = ("units", index)
        spec = drivers.get(unit.driver)
        where = f"{path}: {_key_path(loc)}"
        if spec is None:
            problems.append(f"{where}.driver: unknown driver {_describe(unit.driver)} (installed: {installed})")
            continue
        if unit.chemistry is not None and unit.chemistry.lower() not in registry.chemistries:
            known = ", ".join(sorted(registry.chemistries)) or "none installed"
            problems.append(f"{where}.chemistry: unknown chemistry {_describe(unit.chemistry)} (installed: {known})")
        for transport in ("modbus", "can", "opcua"):
            table = getattr(unit, transport)
            if spec.transport == transport and table is None:
                problems.append(f"{where}: driver {unit.driver!r} talks {transport}: add a [units.{transport}] table")
            elif spec.transport != transport and table is not None:
                problems.append(
                    f"{where}.{transport}: driver {unit.driver!r} does not use {transport} (it uses {spec.transport})"
                )
        problems += _validate_table(spec.unit_options, unit.options, path, loc + ("options",))
    owners = {spec.name: spec for spec in drivers.values()}
    for name, table in config.plugins.items():
        spec = owners.get(name)
        if spec is None:
            problems.append(f"{path}: {_key_path(('plugins', name))}: no installed driver is called {_describe(name)}"
                            f" (installed: {installed})")
            continue
        problems += _validate_table(spec.plugin_options, table, path, ("plugins", name))
    for index, sim in enumerate(config.simulators):
        spec = registry.simulators.get(sim.name)
        if spec is None:
            known = ", ".join(sorted(registry.simulators)) or "none installed"
            problems.append(f"{path}: simulators[{index}].name: unknown simulator {_describe(sim.name)}"
                            f" (installed: {known})")
            continue
        try:
            spec.parse_args(list(sim.args), interactive=False)
        except ValueError as err:
            problems.append(f"{path}: simulators[{index}].args: {err}")
    if problems:
        raise ConfigError(path, problems)


def config_json_schema(registry: PluginRegistry | None = None) -> dict[str, Any]:
    """JSON Schema of the config file, for editors (``bessgw config-schema``).

    With ``registry``, each installed driver's own option models are included: ``units[i].options``
    is checked against the model of the unit's ``driver`` (a JSON Schema ``if``/``then`` per driver) and
    ``plugins.<driver>`` against its plugin-wide model, so editors complete and check plugin keys too.
    """
    schema = Config.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "bessgw gateway configuration"
    if registry is None:
        return schema
    defs = schema["$defs"]
    unit = defs["UnitSection"]
    drivers = sorted(registry.drivers.values(), key=lambda spec: spec.name)
    unit["properties"]["driver"]["examples"] = [spec.name for spec in drivers]
    conditions = []
    plugin_tables: dict[str, Any] = {}
    for spec in drivers:
        options = (_embed(defs, f"{spec.name}.unit_options", spec.unit_options) if spec.unit_options is not None
                   else {"type": "object", "maxProperties": 0, "description": f"{spec.name} takes no unit options"})
        conditions.append({"if": {"properties": {"driver": {"const": spec.name}}, "required": ["driver"]},
                           "then": {"properties": {"options": options}}})
        plugin_tables[spec.name] = (
            _embed(defs, f"{spec.name}.plugin_options", spec.plugin_options) if spec.plugin_options is not None
            else {"type": "object", "maxProperties": 0, "description": f"{spec.name} takes no plugin-wide options"})
    unit["allOf"] = conditions
    schema["properties"]["plugins"] = {
        "type": "object", "description": "Plugin-wide options, one table per installed driver",
        "properties": plugin_tables, "additionalProperties": False}
    return schema


def _embed(defs: dict[str, Any], name: str, model: type) -> dict[str, Any]:
    """Put a plugin model's schema into the root ``$defs`` under ``name`` (its own ``$defs`` prefixed
    ``name.`` so that two plugins' ``Limits`` cannot collide); return the ``$ref`` to it."""
    sub = model.model_json_schema(ref_template=f"#/$defs/{name}.{{model}}")  # type: ignore[attr-defined]
    for inner, definition in sub.pop("$defs", {}).items():
        defs[f"{name}.{inner}"] = definition
    defs[name] = sub
    return {"$ref": f"#/$defs/{name}"}
