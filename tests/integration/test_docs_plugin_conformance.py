"""A plugin written from docs/plugins.md alone passes the public conformance kit, as the page says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import extract_docs_block, extract_docs_example

pytestmark = pytest.mark.integration  # the kit run by pytest in subprocesses, against real event loops


def test_the_docs_plugin_and_its_docs_conformance_test_pass_in_a_fresh_directory(tmp_path: Path) -> None:
    (tmp_path / "bessgw_example.py").write_text(extract_docs_example(), encoding="utf-8")
    (tmp_path / "test_conformance.py").write_text(extract_docs_block("test_conformance.py"), encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "NOTIFY_SOCKET"))}
    env["PYTHONPATH"] = str(tmp_path)
    env["BESSGW_PLUGINS"] = "bessgw_example"  # as the page says, instead of installing the distribution
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_conformance.py"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    # every DriverConformance test ran; only the restart test is skipped (no device to stop)
    assert re.search(r"\b8 passed, 1 skipped\b", result.stdout), result.stdout
