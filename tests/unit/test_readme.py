"""The README's two commands are contracts: CI must run exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    head = text.split("---", 1)[0]
    return re.findall(r"```sh\n(.*?)\n```", head, re.S)


def test_readme_starts_with_demo_and_test_commands() -> None:
    demo, tests = readme_commands()
    assert demo.endswith("bessgw run --config config/demo.toml")
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command() -> None:
    _demo, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert any(line.startswith(tests) for line in ci.splitlines()), "the README's test command is not in .ci/run"
    assert "ruff check" in ci
