"""Which release the upgrade tests start from: the newest of the clone's ``vX.Y.Z`` tags and the releases recorded
in ``releases.toml`` — so a clone without tags (CI's single-branch clone) finds them too — and a clear failure
(never a skip) when there is none. Real git repositories in a temp dir, and this repository itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.upgrade.release import (
    REPO_ROOT,
    ReleaseInstallError,
    export_release,
    latest_release_tag,
    recorded_releases,
    release_commit,
    release_tags,
)

pytestmark = pytest.mark.upgrade


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t.invalid", *args],
                          check=True, capture_output=True, text=True, timeout=30).stdout.strip()


def _repo(path: Path, tags: list[str]) -> Path:
    path.mkdir()
    _git(path, "init", "--quiet")
    _git(path, "commit", "--quiet", "--allow-empty", "-m", "first")
    for tag in tags:
        _git(path, "tag", tag)
    return path


def _commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    _git(repo, "add", name)
    _git(repo, "commit", "--quiet", "-m", name)
    return _git(repo, "rev-parse", "HEAD")


def test_the_newest_release_tag_by_version_not_by_name(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", ["v0.2.0", "v0.10.0", "v0.9.1", "v1.0.0rc1", "nightly"])
    assert latest_release_tag(repo, recorded={}) == "v0.10.0"


def test_a_clone_without_tags_finds_the_recorded_releases_in_its_history(tmp_path: Path) -> None:
    origin = _repo(tmp_path / "origin", [])
    first = _commit_file(origin, "VERSION", "0.1.0\n")
    second = _commit_file(origin, "VERSION", "0.2.0\n")
    _commit_file(origin, "VERSION", "0.3.0.dev0\n")
    _git(origin, "tag", "v0.1.0", first)
    _git(origin, "tag", "-a", "-m", "release", "v0.2.0", second)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", "--no-tags", "--single-branch", str(origin), str(clone)], check=True,
                   capture_output=True, timeout=30)
    assert _git(clone, "tag") == ""
    recorded = {"v0.1.0": first, "v0.2.0": second}
    assert latest_release_tag(clone, recorded) == "v0.2.0"
    tree = export_release("v0.2.0", tmp_path / "export", clone, recorded)
    assert (tree / "VERSION").read_text() == "0.2.0\n"  # the release's tree, not the branch head's
    # with the tags fetched, the annotated tag resolves to the same commit as the record
    _git(clone, "fetch", "--quiet", "--tags")
    assert release_commit("v0.2.0", clone, recorded) == second


def test_a_tag_that_disagrees_with_the_record_fails(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", [])
    first = _commit_file(repo, "a", "1")
    second = _commit_file(repo, "a", "2")
    _git(repo, "tag", "v0.1.0", second)
    with pytest.raises(ReleaseInstallError, match=r"tag v0.1.0 points at .* records"):
        release_commit("v0.1.0", repo, {"v0.1.0": first})


def test_a_recorded_commit_missing_from_the_clone_fails_and_says_why(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", [])
    with pytest.raises(ReleaseInstallError, match=r"not in .*shallow clone"):
        release_commit("v0.1.0", repo, {"v0.1.0": "0" * 40})


def test_no_release_at_all_fails_and_says_what_is_missing(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "r", ["nightly"])
    with pytest.raises(ReleaseInstallError, match=r"no release: no vX.Y.Z tag and none recorded"):
        latest_release_tag(repo, recorded={})


def test_this_repository_records_every_release_it_tags_and_has_each_commit() -> None:
    recorded = recorded_releases()
    assert "v0.2.0" in recorded
    for tag in release_tags(REPO_ROOT):  # a clone with tags: each one recorded, at the same commit
        assert tag in recorded, f"tag {tag} is not recorded in tests/upgrade/releases.toml"
    for tag in recorded:  # with or without tags: every recorded release is in this clone's history
        commit = release_commit(tag)
        assert _git(REPO_ROOT, "merge-base", "--is-ancestor", commit, "HEAD") == ""
