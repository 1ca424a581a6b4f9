"""Links between the README and docs/*.md lead somewhere: the file exists and so does the #anchor
(GitHub's heading slugs), so a renamed runbook section does not leave dead links behind."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slugs(page: Path) -> set[str]:
    """GitHub's anchors for the headings of ``page``: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    headings = re.findall(r"^#{1,6} (.+)$", text, flags=re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        dead_anchor = bool(anchor) and linked.exists() and linked.suffix == ".md" and anchor not in slugs(linked)
        if not linked.exists() or dead_anchor:
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: dead links {broken}"


def test_operations_runbooks_cover_the_issue_s_situations() -> None:
    anchors = slugs(ROOT / "docs" / "operations.md")
    for needed in ("a-unit-is-stale-or-bad", "a-modbus-circuit-breaker-is-open", "a-can-bus-is-off",
                   "a-peer-is-suspect-or-dead", "a-certificate-is-rejected", "the-journal-disk-is-full",
                   "campus-coordination-etcd-is-unavailable", "rotate-the-campus-key",
                   "rotate-the-opc-ua-server-certificate", "time-ntp", "back-up-and-restore-the-state-directory",
                   "rolling-restart-of-a-campus"):
        assert needed in anchors, needed
