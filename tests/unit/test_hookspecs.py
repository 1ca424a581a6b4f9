"""Meta-tests that keep the hook reference honest (as datasette's test_docs does)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from bessgw.plugin import hookspecs

TESTS = Path(__file__).resolve().parents[1]
HOOKS = sorted(
    name for name, obj in vars(hookspecs).items()
    if inspect.isfunction(obj) and hasattr(obj, "bessgw_spec")
)


def test_there_are_hooks() -> None:
    assert {"register_drivers", "register_chemistries", "register_simulators",
            "register_telemetry_observers", "adjust_limits"} <= set(HOOKS)


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented(hook: str) -> None:
    function = getattr(hookspecs, hook)
    doc = inspect.getdoc(function) or ""
    assert len(doc.splitlines()[0]) > 20, f"{hook}: needs a summary line"
    assert ":returns:" in doc, f"{hook}: document what it returns"
    assert re.search(r"\bcalled\b", doc, re.I), f"{hook}: say when and how often it is called"
    assert re.search(r"I/O", doc), f"{hook}: say whether I/O is allowed"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"{hook}: document parameter {parameter}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_listed_in_the_plugin_guide(hook: str) -> None:
    guide = (TESTS.parent / "docs" / "plugins.md").read_text(encoding="utf-8")
    assert f"`{hook}(" in guide


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    sources = "\n".join(p.read_text(encoding="utf-8") for p in TESTS.rglob("test_*.py"))
    assert f"def test_hook_{hook}(" in sources, f"write test_hook_{hook}"
