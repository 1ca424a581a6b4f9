"""Shared fixtures: fixture plugins, the tested docs example, and gateway subprocess helpers."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_PLUGINS = ROOT / "tests" / "fixtures" / "plugins"
DOCS_PLUGINS = ROOT / "docs" / "plugins.md"


def extract_docs_example() -> str:
    """The complete minimal plugin of docs/plugins.md: its first ```python block."""
    text = DOCS_PLUGINS.read_text(encoding="utf-8")
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "docs/plugins.md lost its example plugin"
    return match.group(1)


def extract_docs_block(first_line: str) -> str:
    """The ```python block of docs/plugins.md whose first line contains ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", DOCS_PLUGINS.read_text(encoding="utf-8"), re.S):
        if first_line in block.splitlines()[0]:
            return block
    raise AssertionError(f"docs/plugins.md lost its python block starting with {first_line!r}")


@pytest.fixture(scope="session")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Directories holding the fixture plugins and the docs example (``bessgw_example``), on sys.path."""
    example_dir = tmp_path_factory.mktemp("docs_example")
    (example_dir / "bessgw_example.py").write_text(extract_docs_example(), encoding="utf-8")
    paths = [str(FIXTURE_PLUGINS), str(example_dir)]
    for path in paths:
        if path not in sys.path:
            sys.path.insert(0, path)
    return paths


@pytest.fixture
def subprocess_env(plugin_path: list[str]) -> dict[str, str]:
    """Environment for bessgw subprocesses: fixture plugins importable, no inherited NOTIFY_SOCKET."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*plugin_path, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("NOTIFY_SOCKET", None)
    env.pop("WATCHDOG_USEC", None)
    env.pop("BESSGW_PLUGINS", None)
    return env


@pytest.fixture(scope="session")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source tree of the newest release, exported once per session, to run with ``PYTHONPATH`` next to
    the working tree (its ``bessgw`` shadows ours; the plugins installed in the test venv still load). Fails,
    never skips, when no release is found (see :func:`tests.upgrade.release.latest_release_tag`)."""
    from tests.upgrade.release import export_release, latest_release_tag

    tag = latest_release_tag()
    return export_release(tag, tmp_path_factory.mktemp("release") / tag)
