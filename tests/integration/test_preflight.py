"""Pre-flight: what a valid config still cannot do on this machine is found before start (issue 12.6)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bessgw.config import load_config
from bessgw.config.preflight import preflight, timing_problems
from tests.ports import free_tcp_port

pytestmark = pytest.mark.integration

KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


def problems_of(tmp_path: Path, text: str, **kwargs) -> list[str]:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return list(preflight(load_config(path), str(path), **kwargs).problems)


def base(state_dir: Path) -> str:
    return f'[gateway]\nid = "gw1"\nstate_dir = "{state_dir}"\n'


def test_a_fresh_state_dir_and_free_ports_pass(tmp_path: Path) -> None:
    text = base(tmp_path / "new" / "state") + (
        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{free_tcp_port()}/x"\n')
    assert problems_of(tmp_path, text) == []


def test_busy_opcua_port_is_refused(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        text = base(tmp_path / "s") + f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{port}"\n'
        (line,) = problems_of(tmp_path, text)
    assert line == (f"{tmp_path / 'site.toml'}: northbound.opcua.endpoint: TCP 127.0.0.1:{port}"
                    " is in use by another process")


def test_busy_federation_port_is_refused(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        port = busy.getsockname()[1]
        text = base(tmp_path / "s") + (
            f'[federation]\nbind_host = "127.0.0.1"\nbind_port = {port}\nkeys = ["{KEY}"]\n')
        (line,) = problems_of(tmp_path, text)
    assert line.endswith(f"federation.bind_port: UDP 127.0.0.1:{port} is in use by another process")


def test_listen_address_not_on_this_machine_is_refused(tmp_path: Path) -> None:
    text = base(tmp_path / "s") + '[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://192.0.2.1:4840"\n'
    (line,) = problems_of(tmp_path, text)
    assert "northbound.opcua.endpoint: '192.0.2.1' is not an address of this machine" in line


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (line,) = problems_of(tmp_path, base(tmp_path / "file" / "state"))
    assert line.endswith(f"gateway.state_dir: {tmp_path / 'file'} is not a directory")


def test_state_dir_that_cannot_be_created_is_refused(tmp_path: Path) -> None:
    (line,) = problems_of(tmp_path, base(Path("/proc/bessgw-state")))
    assert "gateway.state_dir: /proc/bessgw-state cannot be created (in /proc)" in line


def test_too_long_state_dir_for_the_admin_socket(tmp_path: Path) -> None:
    (line,) = problems_of(tmp_path, base(tmp_path / ("d" * 120)))
    assert "gateway.state_dir:" in line and "admin socket path would be" in line


def test_journal_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "s" / "commands.sqlite3").mkdir(parents=True)
    (line,) = problems_of(tmp_path, base(tmp_path / "s"))
    journal = tmp_path / "s" / "commands.sqlite3"
    assert line.endswith(f"control.journal_file: {journal}: a directory, not a regular file")


def certificate_pair(tmp_path: Path) -> tuple[Path, Path]:
    from bessgw.northbound.certificates import CertificateFiles, ensure_certificate

    files = ensure_certificate(CertificateFiles(tmp_path / "pair" / "cert.der", tmp_path / "pair" / "key.pem"),
                               "urn:test", "test")
    return files.certificate, files.private_key


def test_valid_certificate_and_key_pass(tmp_path: Path) -> None:
    certificate, key = certificate_pair(tmp_path)
    text = base(tmp_path / "s") + (
        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{free_tcp_port()}"\n'
        f'certificate_path = "{certificate}"\nprivate_key_path = "{key}"\n')
    assert problems_of(tmp_path, text) == []


@pytest.mark.parametrize("kind", ["fifo", "device", "empty", "missing", "huge", "not-a-certificate", "swapped"])
def test_named_files_must_be_regular_readable_and_sane(tmp_path: Path, kind: str) -> None:
    target, key = certificate_pair(tmp_path)
    target = tmp_path / "server.der"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target = Path("/dev/zero")
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "huge":
        target.write_bytes(b"x" * (2 * 1024 * 1024))
    elif kind == "not-a-certificate":
        target.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n")
    elif kind == "swapped":
        target = key
    text = base(tmp_path / "s") + (
        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{free_tcp_port()}"\n'
        f'certificate_path = "{target}"\nprivate_key_path = "{key}"\n')
    (line,) = problems_of(tmp_path, text)
    assert line.startswith(f"{tmp_path / 'site.toml'}: northbound.opcua.certificate_path: {target}: ")


def test_trust_list_entry_that_is_a_fifo_is_refused(tmp_path: Path) -> None:
    trusted = tmp_path / "s" / "pki" / "trusted"
    trusted.mkdir(parents=True)
    os.mkfifo(trusted / "client.der")
    text = base(tmp_path / "s") + (
        f'[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://127.0.0.1:{free_tcp_port()}"\n')
    (line,) = problems_of(tmp_path, text)
    assert line.endswith(f"northbound.opcua.pki_dir: {trusted / 'client.der'}: a FIFO, not a regular file")


def test_skip_files_reads_nothing_and_says_what_it_skipped(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(base(Path("/nonexistent/state")) + (
        '[federation]\nbind_host = "10.1.1.1"\nkey_file = "/nonexistent/campus.keys"\n'), encoding="utf-8")
    report = preflight(load_config(path, read_files=False), str(path), skip_files=True)
    assert report.problems == ()
    assert any(line.startswith("federation.key_file: /nonexistent/campus.keys") for line in report.skipped)
    assert any(line.startswith("federation.bind_port: UDP 10.1.1.1:7946") for line in report.skipped)


# --------------------------------------------------------------------------------- timing (12.5)


def timing_of(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "site.toml"
    path.write_text(base(tmp_path / "s") + text, encoding="utf-8")
    return timing_problems(load_config(path), str(path))


UNIT = '[[units]]\nid = "A1"\ndriver = "vendor_a"\n[units.modbus]\nport = 15020\n'


def test_request_timeout_longer_than_the_bad_limit_is_refused(tmp_path: Path) -> None:
    (line,) = timing_of(tmp_path, '[southbound.modbus]\nrequest_timeout_s = 10\n'
                                  '[defaults]\npoll_interval_s = 0.5\nstale_after_s = 2\nbad_after_s = 6\n' + UNIT)
    assert line.startswith(f"{tmp_path / 'site.toml'}: southbound.modbus.request_timeout_s: request_timeout_s (10 s)"
                           " plus defaults.poll_interval_s (0.5 s) exceeds defaults.bad_after_s (6 s) of units[0] (A1)")


def test_poll_interval_not_shorter_than_stale_limit_is_refused(tmp_path: Path) -> None:
    unit = UNIT.replace("[units.modbus]", "poll_interval_s = 2\nstale_after_s = 2\nbad_after_s = 10\n[units.modbus]")
    (line,) = timing_of(tmp_path, unit)
    assert line.startswith(f"{tmp_path / 'site.toml'}: units[0].poll_interval_s: 2 s must be shorter than "
                           "units[0].stale_after_s (2 s)")


def test_opcua_keepalive_and_can_frame_timeout_count_too(tmp_path: Path) -> None:
    text = ('[southbound.opcua]\nkeepalive_interval_s = 5\n'
            '[[units]]\nid = "B1"\ndriver = "vendor_b"\n[units.opcua]\nendpoint = "opc.tcp://127.0.0.1:4850"\n'
            'namespace_uri = "urn:x"\nobject_path = "C/V"\n'
            '[[units]]\nid = "C1"\ndriver = "vendor_c"\n[units.can]\nnode_id = 1\nframe_timeout_s = 30\n')
    lines = timing_of(tmp_path, text)
    assert [line.split(": ")[1] for line in lines] == ["southbound.opcua.keepalive_interval_s",
                                                     "units[1].can.frame_timeout_s"]


def test_stop_timeout_must_fit_the_shutdown_grace(tmp_path: Path) -> None:
    (line,) = timing_of(tmp_path, "[control]\nstop_timeout_s = 6\n")
    assert line.endswith("control.stop_timeout_s: 6 s must not exceed gateway.shutdown_grace_s (5 s), "
                         "or the ramp to 0 kW at stop is cut off")


def test_shipped_configs_pass_the_timing_rules(plugin_path) -> None:
    root = Path(__file__).resolve().parents[2] / "config"
    for path in sorted(root.rglob("*.toml")):
        assert timing_problems(load_config(path, read_files=False), str(path)) == [], path


def test_a_host_name_that_does_not_resolve_in_time_is_a_problem_not_a_hang(tmp_path: Path, monkeypatch) -> None:
    """A DNS server that never answers cannot run here: getaddrinfo is replaced by one that blocks."""
    import threading

    from bessgw.config import preflight as module

    release = threading.Event()
    real = socket.getaddrinfo

    def blocking(host, *args, **kwargs):
        if host == "scada-gw.example":
            release.wait(30)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(module, "RESOLVE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(module.socket, "getaddrinfo", blocking)
    text = base(tmp_path / "s") + '[northbound.opcua]\nenabled = true\nendpoint = "opc.tcp://scada-gw.example:4840"\n'
    try:
        (line,) = problems_of(tmp_path, text)
    finally:
        release.set()
    assert line.endswith("northbound.opcua.endpoint: cannot resolve 'scada-gw.example': no answer within 0.2 s")
