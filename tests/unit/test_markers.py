"""Every slow test file carries its marker, so `-m "not integration and not daemon ..."` is the fast set."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
SLOW_DIRS = ("integration", "chaos", "federation", "interop", "upgrade")
SLOW_MARKERS = {"integration", "daemon", "chaos", "federation", "interop", "upgrade"}


def _module_markers(path: Path) -> set[str]:
    """The marker names of the module-level ``pytestmark`` (``pytest.mark.X`` or a list of them)."""
    names: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "pytestmark" for t in node.targets):
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute) and sub.value.attr == "mark":
                    names.add(sub.attr)
    return names


SLOW_FILES = sorted(str(p.relative_to(TESTS)) for d in SLOW_DIRS for p in (TESTS / d).glob("test_*.py"))


@pytest.mark.parametrize("name", SLOW_FILES)
def test_slow_test_files_carry_a_module_marker(name: str) -> None:
    markers = _module_markers(TESTS / name)
    assert markers & SLOW_MARKERS, f"tests/{name}: add `pytestmark = pytest.mark.<one of {sorted(SLOW_MARKERS)}>`"


def test_the_marker_check_reads_what_files_declare(tmp_path: Path) -> None:
    marked, listed, bare = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    marked.write_text("import pytest\npytestmark = pytest.mark.integration\n", encoding="utf-8")
    listed.write_text("import pytest\npytestmark = [pytest.mark.federation, pytest.mark.timeout(9)]\n",
                      encoding="utf-8")
    bare.write_text("import pytest\n\n@pytest.mark.integration\ndef test_x():\n    pass\n", encoding="utf-8")
    assert _module_markers(marked) == {"integration"}
    assert _module_markers(listed) == {"federation", "timeout"}
    assert _module_markers(bare) == set()
