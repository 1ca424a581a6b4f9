"""Config errors must name the file, the key path and what was expected."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from bessgw.config import (
    Config,
    check_against_plugins,
    config_json_schema,
    load_config,
    parse_config,
    read_toml,
)
from bessgw.errors import EX_CONFIG, ConfigError
from bessgw.plugin.manager import build_plugin_manager

MINIMAL = """
[gateway]
id = "gw1"
state_dir = "/tmp/bessgw-test"
"""


def write(tmp_path: Path, text: str, name: str = "site.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def errors_of(path: Path, registry=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, registry)
    assert info.value.exit_code == EX_CONFIG
    return info.value.problems


def test_minimal_config_loads_with_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.gateway.id == "gw1"
    assert config.defaults.poll_interval_s == 0.1
    assert config.units == []


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[defaults]\npoll_intervall_s = 0.2\n")
    assert errors_of(path) == [f"{path}: defaults.poll_intervall_s: unknown key "
                               "(check the spelling; `bessgw config-schema` lists every key)"]


def test_wrong_type_names_index_key_and_expectation(tmp_path: Path) -> None:
    units = "".join(
        f'\n[[units]]\nid = "u{i}"\ndriver = "in_memory"\n' for i in range(3)
    ) + '\n[[units]]\nid = "u3"\ndriver = "vendor_a"\n[units.modbus]\nport = 70000\n'
    path = write(tmp_path, MINIMAL + units)
    (line,) = errors_of(path)
    assert line == f"{path}: units[3].modbus.port: Input should be less than or equal to 65535 (got 70000)"


def test_string_where_number_expected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[defaults]\nstale_after_s = "soon"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: defaults.stale_after_s: Input should be a valid number")
    assert "(got 'soon')" in line


def test_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[defaults]\npoll_interval_s = = 1\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: line 7, column 19: TOML syntax error:")


def test_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "[gateway]\nstate_dir = '/tmp'\n")
    assert errors_of(path) == [f"{path}: gateway.id: required key is missing"]


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\nbogus = 1\n[defaults]\npoll_interval_s = -1\n")
    problems = errors_of(path)
    assert len(problems) == 2
    assert any("bogus: unknown key" in p for p in problems)
    assert any("defaults.poll_interval_s: Input should be greater than 0 (got -1)" in p for p in problems)


def test_cross_field_rule_is_reported_with_its_table(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "\n[defaults]\nstale_after_s = 10\nbad_after_s = 2\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: defaults: Value error, stale_after_s must not exceed bad_after_s")


def test_duplicate_unit_ids_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[[units]]\nid="a"\ndriver="x"\n[[units]]\nid="a"\ndriver="x"\n')
    (line,) = errors_of(path)
    assert "unit id 'a' is used by units[0] and units[1]" in line


def test_unreadable_file(tmp_path: Path) -> None:
    problems = errors_of(tmp_path / "missing.toml")
    assert problems[0].startswith(f"{tmp_path / 'missing.toml'}: cannot read")


def test_plugin_tables_are_validated_by_the_plugins_models(tmp_path: Path, plugin_path) -> None:
    pm = build_plugin_manager(load_entry_points=True, modules=["bessgw_example"])
    registry = pm.collect()
    path = write(
        tmp_path,
        MINIMAL
        + '\n[[units]]\nid="m1"\ndriver="in_memory"\n[units.options]\nenergy_kwh = -5\ncolour = "red"\n'
        + '\n[[units]]\nid="m2"\ndriver="no_such_driver"\n'
        + '\n[[units]]\nid="m3"\ndriver="in_memory"\n[units.modbus]\nport = 502\n',
    )
    problems = errors_of(path, registry)
    assert f"{path}: units[0].options.energy_kwh: Input should be greater than 0 (got -5)" in problems
    assert f"{path}: units[0].options.colour: unknown key (check the spelling; " \
        "`bessgw config-schema` lists every key)" in problems
    assert any(p.startswith(f"{path}: units[1].driver: unknown driver 'no_such_driver' (installed: ")
               and "in_memory" in p for p in problems)
    assert f"{path}: units[2].modbus: driver 'in_memory' does not use modbus (it uses none)" in problems


def test_config_is_frozen() -> None:
    config = parse_config({"gateway": {"id": "gw"}})
    with pytest.raises(ValidationError, match="frozen"):
        config.gateway.id = "other"  # type: ignore[misc]


def test_unit_timing_inherits_defaults() -> None:
    config = parse_config({"gateway": {"id": "gw"}, "defaults": {"poll_interval_s": 0.5},
                           "units": [{"id": "u", "driver": "d", "stale_after_s": 2.0}]})
    timing = config.unit_timing(config.units[0])
    assert (timing.poll_interval_s, timing.stale_after_s) == (0.5, 2.0)


def test_json_schema_lists_every_table() -> None:
    schema = config_json_schema()
    assert set(schema["properties"]) == set(Config.model_fields)
    assert schema["$defs"]["ModbusLink"]["properties"]["port"]["maximum"] == 65535
def test_shipped_configs_are_valid(plugin_path) -> None:
    registry = build_plugin_manager().collect()
    root = Path(__file__).resolve().parents[2] / "config"
    shipped = sorted(root.rglob("*.toml"))
    assert shipped, "config/ ships no TOML files"
    for path in shipped:  # (key files named by federation.key_file exist only on real gateways)
        check_against_plugins(parse_config(read_toml(path), str(path)), registry, str(path))


def test_unreadable_campus_key_file_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + f'\n[federation]\nbind_host = "127.0.0.1"\nkey_file = "{tmp_path}/nokeys"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: federation.key_file: {tmp_path}/nokeys: cannot read campus keys")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, monkeypatch) -> None:
    site = tmp_path / "etc"
    site.mkdir()
    (site / "campus.keys").write_text("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n")
    path = write(site, '[gateway]\nid = "gw"\nstate_dir = "../var/gw"\n'
                       '[federation]\nbind_host = "127.0.0.1"\nkey_file = "campus.keys"\n')
    monkeypatch.chdir("/")
    config = load_config(path)
    assert config.gateway.state_dir == tmp_path / "var" / "gw"
    assert config.federation.key_file == site / "campus.keys"


# ------------------------------------------------------- inputs that crashed check-config (issue 12.6)


def test_deeply_nested_arrays_are_a_config_error(tmp_path: Path) -> None:
    deep = "[" * 3000 + "1" + "]" * 3000
    path = write(tmp_path, MINIMAL + f"\n[plugins.vendor_a]\nx = {deep}\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: ") and "nested too deeply" in line


def test_moderately_deep_nesting_names_the_key_path(tmp_path: Path) -> None:
    deep = "[" * 100 + "1" + "]" * 100
    path = write(tmp_path, MINIMAL + f"\n[plugins.vendor_a]\nx = {deep}\n")
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: plugins.vendor_a.x[0]") and "nested too deeply (at most 32 levels)" in line


def test_nul_byte_in_a_path_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, '[gateway]\nid = "gw1"\nstate_dir = "/tmp/a\\u0000b"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: gateway.state_dir: ") and "NUL byte" in line


def test_nul_byte_in_the_key_file_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[federation]\nbind_host = "127.0.0.1"\nkey_file = "/tmp/k\\u0000"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: federation.key_file: ") and "NUL byte" in line


def test_key_file_that_is_a_device_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[federation]\nbind_host = "127.0.0.1"\nkey_file = "/dev/zero"\n')
    (line,) = errors_of(path)
    assert line == f"{path}: federation.key_file: /dev/zero: cannot read campus keys: a device, not a regular file"


def test_key_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "keys.fifo"
    os.mkfifo(fifo)
    path = write(tmp_path, MINIMAL + f'\n[federation]\nbind_host = "127.0.0.1"\nkey_file = "{fifo}"\n')
    (line,) = errors_of(path)
    assert line == f"{path}: federation.key_file: {fifo}: cannot read campus keys: a FIFO, not a regular file"


def test_huge_key_file_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "campus.keys"
    keys.write_bytes(b"#" * (1024 * 1024))
    path = write(tmp_path, MINIMAL + f'\n[federation]\nbind_host = "127.0.0.1"\nkey_file = "{keys}"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: federation.key_file: {keys}: cannot read campus keys: 1048576 bytes")


@pytest.mark.parametrize("name", ["fifo", "/dev/zero", "dir"])
def test_config_file_that_is_not_a_regular_file_is_refused(tmp_path: Path, name: str) -> None:
    target = Path(name) if name.startswith("/") else tmp_path / name
    if name == "fifo":
        os.mkfifo(target)
    elif name == "dir":
        target.mkdir()
    (line,) = errors_of(target)
    assert line.startswith(f"{target}: ") and "not a regular file" in line


@pytest.mark.parametrize("args", [["--help"], ["--port", "15020", "-h"], ["--port", "1", "--help"]])
def test_simulator_help_in_a_config_is_an_error_not_an_exit(tmp_path: Path, plugin_path, args: list[str]) -> None:
    registry = build_plugin_manager().collect()
    path = write(tmp_path, MINIMAL + f'\n[[simulators]]\nname = "vendor_a"\nargs = {json.dumps(args)}\n')
    (line,) = errors_of(path, registry)
    assert line.startswith(f"{path}: simulators[0].args: ")


@pytest.mark.parametrize("journal_file", ["/", "../../x", "/etc/passwd", "a/../../b", "", ".", "db/"])
def test_journal_file_must_stay_inside_the_state_dir(tmp_path: Path, journal_file: str) -> None:
    path = write(tmp_path, MINIMAL + f'\n[control]\njournal_file = "{journal_file}"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: control.journal_file: ")


def test_journal_file_may_be_in_a_subdirectory(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL + '\n[control]\njournal_file = "journal/commands.sqlite3"\n'))
    assert config.control.journal_file == "journal/commands.sqlite3"


@pytest.mark.parametrize("endpoint", ["opc.tcp://127.0.0.1:70000/x", "opc.tcp://127.0.0.1:99999"])
def test_opcua_endpoint_port_out_of_range(tmp_path: Path, endpoint: str) -> None:
    path = write(tmp_path, MINIMAL + f'\n[northbound.opcua]\nenabled = true\nendpoint = "{endpoint}"\n')
    (line,) = errors_of(path)
    assert line.startswith(f"{path}: northbound.opcua: ") and "port must be in 0..65535" in line
