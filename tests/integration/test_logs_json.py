"""``bessgw run --config <demo> | jq -c .``: every line on stdout is one JSON object, from start to stop.

Through a start, a unit fault (a device that accepts connections and never answers) and a SIGTERM: no
raw traceback in the stream, no local variables in any line, nothing at error level while stopping.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from bessgw.testing.wait import wait_until_sync
from tests.integration.daemon_harness import bessgw_command
from tests.integration.test_daemon_demo import SILENT_UNIT, demo_config

pytestmark = pytest.mark.daemon


@pytest.mark.timeout(180)
def test_demo_logs_one_json_object_per_line_on_stdout_through_start_fault_and_sigterm(
        tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    config, _opcua, grace_s = demo_config(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + SILENT_UNIT.format(port=silent.getsockname()[1]),
                      encoding="utf-8")
    proc = subprocess.Popen([*bessgw_command(), "run", "--config", str(config)], env=subprocess_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[bytes] = []
    lock = threading.Lock()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with lock:
                lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def strict(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    def events() -> list[dict]:
        with lock:
            return [json.loads(line, parse_constant=strict) for line in lines]

    try:
        wait_until_sync(lambda: any(e.get("event") == "ready" for e in events()), timeout_s=90, what="ready")
        # the fault: the silent unit's requests time out, its session goes down (a warning, not a crash)
        wait_until_sync(lambda: any(e.get("unit") == "A9-silent" and e.get("level") == "warning"
                                    for e in events()), timeout_s=30, what="the silent unit's fault logged")
        stop_at = len(events())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(grace_s + 10) == 0
        reader.join(10)
        stderr = proc.stderr.read().decode() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        silent.close()

    # every stdout line is one JSON object (json.loads above would have raised); jq agrees
    jq = shutil.which("jq")
    if jq is not None:
        result = subprocess.run([jq, "-c", "."], input=b"".join(lines), capture_output=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == len(lines)
    parsed = events()
    assert all(isinstance(entry, dict) and "event" in entry and "level" in entry for entry in parsed)
    assert "Traceback" not in stderr, stderr[-2000:]
    # no local variable dumps (structlog's dict tracebacks carry "frames" with "locals"): type/message/stack
    text = b"".join(lines).decode()
    assert '"locals"' not in text
    for entry in parsed:
        exception = entry.get("exception")
        if exception is not None:
            assert set(exception) <= {"type", "message", "stack", "cause"}, entry
    # a clean stop logs nothing at error level or above
    stopping = parsed[stop_at:]
    assert any(e.get("event") == "stopped" for e in stopping)
    assert [e for e in stopping if e.get("level") in ("error", "critical")] == []
