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


def _layout_block() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1]
    block = re.search(r"```\n(.*?)\n```", section, re.S)
    assert block, "the README lost its layout block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip()]


def test_readme_layout_names_only_paths_that_exist() -> None:
    missing = [path for path in _layout_block() if not (ROOT / path.split(",")[0]).exists()]
    assert not missing, f"the README layout names paths that do not exist: {missing}"


def test_readme_layout_lists_every_package_and_plugin() -> None:
    listed = {path.rstrip("/") for path in _layout_block()}
    packages = {f"bessgw/{p.name}" for p in (ROOT / "bessgw").iterdir() if (p / "__init__.py").exists()}
    plugins = {f"plugins/{p.name}" for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    assert not (packages | plugins) - listed, f"the README layout misses {sorted((packages | plugins) - listed)}"


def test_repository_docs_do_not_point_outside_the_repository() -> None:
    """Users have the repository only: no link or reference may leave it."""
    files = [ROOT / "README.md", ROOT / "pyproject.toml", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "bessgw").rglob("*.py")]
    offenders = [str(f.relative_to(ROOT)) for f in files if "shared/" in f.read_text(encoding="utf-8")]
    assert not offenders, f"references outside the repository in {offenders}"


def _readme_exit_codes() -> dict[str, set[int]]:
    """The README's command table: command (``status``, ``campus setpoint``, ``--version``) -> exit codes."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n\n", 2)[1]
    codes: dict[str, set[int]] = {}
    for row in table.splitlines()[2:]:
        usage, _what, exits = (cell.strip() for cell in row.strip("|").split(" | "))
        words = usage.strip("`").split()[1:]  # after "bessgw"
        name = " ".join(words[:1] if words[0].startswith("--") else
                        [w for w in words[:2] if re.fullmatch(r"[a-z][a-z-]*", w)][:2])
        codes[name] = {int(code) for code in re.findall(r"\b\d+\b", exits)}
    return codes


def test_readme_exit_codes_are_the_cli_s() -> None:
    from bessgw.cli import EXIT_CODES

    assert _readme_exit_codes() == {name: set(codes) for name, codes in EXIT_CODES.items()}


def test_every_command_has_documented_exit_codes() -> None:
    import argparse

    from bessgw.cli import EXIT_CODES, build_parser

    def names(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
        found: set[str] = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = names(sub, f"{prefix}{name} ")
                    found |= nested or {f"{prefix}{name}"}
        return found

    assert names(build_parser()) | {"--version"} == set(EXIT_CODES)
