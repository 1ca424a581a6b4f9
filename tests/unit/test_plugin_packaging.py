"""Each first-party plugin's pyproject declares every distribution its code imports (and bessgw)."""

from __future__ import annotations

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"


def _imported_top_levels(source_dir: Path) -> set[str]:
    names: set[str] = set()
    for source in source_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def _declared(pyproject: Path) -> set[str]:
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    return {re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in dependencies}


@pytest.mark.parametrize("plugin", sorted(p.name for p in PLUGINS.iterdir() if (p / "pyproject.toml").is_file()))
def test_plugin_declares_what_it_imports(plugin: str) -> None:
    root = PLUGINS / plugin
    own = {p.name for p in (root / "src").iterdir() if p.is_dir()}
    distributions = packages_distributions()
    needed: set[str] = set()
    for name in _imported_top_levels(root / "src") - own - set(sys.stdlib_module_names) - {"__future__"}:
        assert name in distributions, f"{plugin} imports {name}, which no installed distribution provides"
        needed.update(d.lower().replace("_", "-") for d in distributions[name])
    declared = _declared(root / "pyproject.toml")
    assert "bessgw" in declared
    assert needed <= declared, f"plugins/{plugin}/pyproject.toml does not declare {sorted(needed - declared)}"
