"""Install a released bessgw (a release commit of this repository) into a venv of its own, for upgrade tests.

A release is a ``vX.Y.Z`` tag; each is also recorded with its commit in ``releases.toml`` beside this module,
so that a clone without tags (a single-branch clone, as CI makes) still finds them in its history.

The release is exported with ``git archive`` (the tag's tree exactly, not the working tree), and bessgw
plus the plugin packages its ``requirements-dev.txt`` installs editable (``-e plugins/<name>``) are
installed *non-editable* with ``--no-deps`` into a new venv. Third-party dependencies are not downloaded
again: a ``.pth`` file puts the test venv's site-packages after the release venv's own, and ``pip check``
then proves the release's declared requirements are met by what it sees (the install fails clearly when
the release needs something else, e.g. a dependency it pinned differently).

Why the release wins over the working tree's editable installs: a plain directory line in a ``.pth`` file
puts that directory on ``sys.path`` without processing the ``.pth`` files inside it, so the working tree's
editable finders never load; the release venv's own site-packages comes first on ``sys.path``, so its
``bessgw`` and ``bessgw_*`` packages are imported and its distributions' entry points are the ones
``importlib.metadata`` keeps (it keeps the first distribution of each name on the path). Processes of the
release must still be started without ``PYTHONPATH`` and from a directory that holds no ``bessgw`` package
(:meth:`Release.env`, :attr:`Release.cwd`); :func:`install_release` checks where every package comes from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

#: the repository whose tags are the releases
REPO_ROOT = Path(__file__).resolve().parents[2]
#: the releases of REPO_ROOT with their commits (for clones without tags)
RECORDED_RELEASES = Path(__file__).with_name("releases.toml")
#: ``-e plugins/<name>`` lines of a release's requirements-dev.txt: its first-party plugin packages
_PLUGIN_LINE = re.compile(r"^-e\s+(plugins/[A-Za-z0-9_.-]+)\s*$", re.M)
_RELEASE_TAG = re.compile(r"^v\d+\.\d+\.\d+$")


class ReleaseInstallError(AssertionError):
    """The previous release cannot be found or installed (the test fails with this, never skips)."""


def _git(*args: str, repo: Path = REPO_ROOT, timeout_s: float = 60.0) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise ReleaseInstallError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def release_tags(repo: Path = REPO_ROOT) -> list[str]:
    """The ``vX.Y.Z`` tags of ``repo``, newest version first."""
    return [t for t in _git("tag", "--list", "v*", "--sort=-v:refname", repo=repo).split() if _RELEASE_TAG.match(t)]


def recorded_releases(path: Path = RECORDED_RELEASES) -> dict[str, str]:
    """Release tag → commit as recorded in ``releases.toml`` (a malformed entry fails, naming it)."""
    releases: dict[str, str] = {}
    for index, entry in enumerate(tomllib.loads(path.read_text(encoding="utf-8")).get("release", [])):
        tag, commit = entry.get("tag", ""), entry.get("commit", "")
        if not _RELEASE_TAG.match(tag) or not re.fullmatch(r"[0-9a-f]{40}", commit):
            raise ReleaseInstallError(f"{path.name}: release[{index}] needs tag = \"vX.Y.Z\" and a full 40-hex "
                                      f"commit, got {entry!r}")
        releases[tag] = commit
    return releases


def _version_key(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag[1:].split("."))


def _default_record(repo: Path) -> dict[str, str]:
    return recorded_releases() if repo.resolve() == REPO_ROOT else {}


def latest_release_tag(repo: Path = REPO_ROOT, recorded: dict[str, str] | None = None) -> str:
    """The newest release: of the clone's ``vX.Y.Z`` tags and the recorded releases (``recorded``, by default
    ``releases.toml`` for this repository); fails clearly when there is none."""
    recorded = _default_record(repo) if recorded is None else recorded
    tags = set(release_tags(repo)) | set(recorded)
    if not tags:
        raise ReleaseInstallError(
            f"{repo} has no release: no vX.Y.Z tag and none recorded in {RECORDED_RELEASES.name}; the upgrade "
            "tests need the previous release")
    return max(tags, key=_version_key)


def release_commit(tag: str, repo: Path = REPO_ROOT, recorded: dict[str, str] | None = None) -> str:
    """The commit of release ``tag`` in ``repo``: the tag's if the clone has it (it must agree with the record),
    else the recorded one, which must be in the clone's history (a shallow clone may lack it)."""
    recorded = _default_record(repo) if recorded is None else recorded
    tagged = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"],
                            capture_output=True, text=True, timeout=60).stdout.strip()
    if tagged and tag in recorded and recorded[tag] != tagged:
        raise ReleaseInstallError(f"tag {tag} points at {tagged} but {RECORDED_RELEASES.name} records "
                                  f"{recorded[tag]}: one of them is wrong")
    commit = tagged or recorded.get(tag, "")
    if not commit:
        raise ReleaseInstallError(f"release {tag} is neither a tag of {repo} nor recorded in {RECORDED_RELEASES.name}")
    present = subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
                             capture_output=True, timeout=60)
    if present.returncode != 0:
        raise ReleaseInstallError(f"commit {commit} of release {tag} is not in {repo} (a shallow clone? "
                                  "`git fetch --unshallow`)")
    return commit


@dataclass(frozen=True)
class Release:
    """An installed release: run its gateway and CLI with :attr:`bessgw`, in :meth:`env`, from :attr:`cwd`."""

    tag: str
    root: Path  #: the exported source tree
    venv: Path
    version: str  #: ``bessgw.__version__`` as the release reports it
    install_s: float  #: how long the install took (0 when the session cache had it)

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def bessgw(self) -> list[str]:
        """The command line of the release's ``bessgw`` (its console script: no working-tree sys.path[0])."""
        return [str(self.venv / "bin" / "bessgw")]

    @property
    def cwd(self) -> Path:
        """A directory without a ``bessgw`` package to start the release's processes from."""
        return self.venv

    def env(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` without what would put the working tree in front of the release (``PYTHONPATH``)."""
        env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), base.get("PATH", "")])
        return env


def _plugin_dirs(root: Path) -> list[Path]:
    requirements = root / "requirements-dev.txt"
    if not requirements.exists():
        raise ReleaseInstallError(f"{requirements.name} missing from the release: cannot tell its plugin packages")
    return [root / rel for rel in _PLUGIN_LINE.findall(requirements.read_text(encoding="utf-8"))]


def _run(cmd: list[str], what: str, **kwargs: object) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise ReleaseInstallError(
            f"{what} failed ({result.returncode}): {result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.stdout


_PROBE = """
import importlib.metadata as md, json, bessgw
mods = {}
for ep in md.entry_points(group="bessgw"):
    mod = __import__(ep.value.split(":")[0].split(".")[0])
    mods[ep.name] = mod.__file__
print(json.dumps({"version": bessgw.__version__, "bessgw": bessgw.__file__, "plugins": mods}))
"""


def export_release(tag: str, dest: Path, repo: Path = REPO_ROOT, recorded: dict[str, str] | None = None) -> Path:
    """The source tree of release ``tag`` exactly (``git archive``, nothing in the checkout changes) in ``dest``."""
    commit = release_commit(tag, repo, recorded)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest.parent / f"{dest.name}.tar"
    with archive.open("wb") as out:
        result = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", commit], stdout=out,
                                stderr=subprocess.PIPE, timeout=120)
    if result.returncode != 0:
        raise ReleaseInstallError(f"git archive {tag} failed: {result.stderr.decode(errors='replace').strip()}")
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 (and security backports)
            tar.extractall(dest, filter="data")
        else:  # our own tag's archive, written by git just now
            tar.extractall(dest)
    archive.unlink()
    return dest


def install_release(tag: str, cache: Path, repo: Path = REPO_ROOT) -> Release:
    """Export ``tag`` and install it into ``cache/<tag>/venv`` (reused if a previous call completed it)."""
    base = cache / tag
    marker = base / "installed.json"
    if marker.exists():
        info = json.loads(marker.read_text(encoding="utf-8"))
        return Release(tag, base / "src", base / "venv", info["version"], 0.0)
    started = time.monotonic()
    if base.exists():
        shutil.rmtree(base)  # a half-finished install of an earlier attempt
    root, venv = base / "src", base / "venv"
    export_release(tag, root, repo)
    # --without-pip: the test venv's pip installs into it (faster than bootstrapping pip per release)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], "python -m venv")
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    release_site = Path(_run([str(venv / "bin" / "python"), "-c", purelib], "reading the release venv's site-packages")
                        .strip())
    # after the release's own site-packages: third-party packages only (its .pth files are not processed)
    (release_site / "zz_test_venv_deps.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    packages = [root, *_plugin_dirs(root)]
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet", "--no-deps",
          *map(str, packages)], f"pip install of {tag}")
    _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "check"],
         f"pip check of {tag} (its requirements against the test venv's packages)")
    probe = json.loads(_run([str(venv / "bin" / "python"), "-c", _PROBE], f"importing {tag}", cwd=venv,
                            env=Release(tag, root, venv, "", 0).env(dict(os.environ))))
    foreign = {name: path for name, path in {"bessgw": probe["bessgw"], **probe["plugins"]}.items()
               if not Path(path).is_relative_to(release_site)}
    if foreign or not probe["plugins"]:
        raise ReleaseInstallError(f"{tag}: packages not imported from the release venv {release_site}: {foreign} "
                                  f"(plugins found: {sorted(probe['plugins'])})")
    marker.write_text(json.dumps({"version": probe["version"], "plugins": sorted(probe["plugins"])}), encoding="utf-8")
    return Release(tag, root, venv, probe["version"], time.monotonic() - started)
