"""Which release the upgrade test starts from: the newest ``vX.Y.Z`` tag, fetched once if the clone has none,
and a clear failure (never a skip) when there is none at all. Real git repositories in a temp dir."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.upgrade.release import ReleaseInstallError, latest_release_tag

pytestmark = pytest.mark.upgrade


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
                   check=True, capture_output=True, timeout=30)


def _repo(path: Path, tags: list[str]) -> Path:
    path.mkdir()
    _git(path, "init", "--quiet")
    _git(path, "commit", "--quiet", "--allow-empty", "-m", "first")
    for tag in tags:
        _git(path, "tag", tag)
    return path


def test_the_newest_release_tag_by_version_not_by_name(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", ["v0.2.0", "v0.10.0", "v0.9.1", "v1.0.0rc1", "nightly"])
    assert latest_release_tag(repo) == "v0.10.0"


def test_a_clone_without_tags_fetches_them_once(tmp_path: Path) -> None:
    origin = _repo(tmp_path / "origin", ["v0.1.0", "v0.2.0"])
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-tags", str(origin), str(clone)], check=True,
                   capture_output=True, timeout=30)
    assert subprocess.run(["git", "-C", str(clone), "tag"], capture_output=True, text=True).stdout == ""
    assert latest_release_tag(clone) == "v0.2.0"


def test_no_release_tag_at_all_fails_and_says_what_to_do(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", ["nightly"])
    with pytest.raises(ReleaseInstallError, match=r"no release tag .*git fetch --tags"):
        latest_release_tag(repo)
