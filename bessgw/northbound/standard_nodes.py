"""The OPC UA standard address space kept on disk, its nodes read into memory only when something asks.

asyncua builds the standard address space (~6,000 nodes: types, the Server object, ...) node by node on
every start: ~2.5 s of CPU and ~25-50 MB of RSS (glibc keeps much of the build's garbage), although a
gateway touches a few hundred of those nodes and a client rarely many more. asyncua can serve them from
a :mod:`shelve` file instead, unpickling a node the first time it is read (``load_aspace_shelf``); nodes
read, written or referenced from then on live in memory as before, so reads, writes, browsing,
subscriptions and our compaction behave as without the shelf.

The shelf is a file the daemon writes, so it is handled like one:

* it lives in its own directory under the state dir, named after the asyncua and Python versions (a
  shelf is pickles of asyncua's classes): an upgrade gets a fresh one, and shelves of other versions are
  removed when it is built;
* it is built in a temporary directory and renamed into place, with a manifest (versions, node count,
  SHA-256 of every file) written last: an interrupted build leaves no shelf, only a temporary directory
  that the next build removes;
* before use the manifest is checked against the files; anything missing, truncated, corrupt or foreign
  is removed and rebuilt, and if no shelf can be used at all (read-only state dir, full disk) the
  standard address space is built in memory as before, with one warning. It never stops the server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pickle
import shelve
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version as distribution_version
from pathlib import Path
from typing import Any

from asyncua.server.address_space import AddressSpace, NodeManagementService

from bessgw.compat import timeout
from bessgw.durable import fsync_path

#: the shelf directories' parent, under the state dir
CACHE_DIR_NAME = "opcua-standard-nodes"
MANIFEST_NAME = "manifest.json"
SHELF_NAME = "nodes"  # dbm adds its own suffixes (.dat/.dir/.bak with dbm.dumb, .db with ndbm, none with gdbm)
_PREFIX = "asyncua-"


class StandardNodesCacheError(Exception):
    """A shelf cannot be used (missing, corrupt, foreign); the caller rebuilds it or loads in memory."""


@dataclass(frozen=True)
class ShelfKey:
    """What a shelf's pickles depend on: the asyncua version, the Python version, the pickle protocol."""

    asyncua: str
    python: str = f"{sys.version_info.major}.{sys.version_info.minor}"
    protocol: int = pickle.HIGHEST_PROTOCOL

    @classmethod
    def installed(cls) -> ShelfKey:
        return cls(asyncua=distribution_version("asyncua"))

    @property
    def dir_name(self) -> str:
        safe = "".join(c if c.isalnum() or c in ".-_" else "_" for c in self.asyncua)
        return f"{_PREFIX}{safe}-py{self.python}-p{self.protocol}"


def shelf_path(state_dir: Path, key: ShelfKey) -> Path:
    """The shelf's base path (dbm file names start with it) for ``key`` under ``state_dir``."""
    return state_dir / CACHE_DIR_NAME / key.dir_name / SHELF_NAME


#: bound on building a shelf in the child process (~3-5 s on a quiet machine)
BUILD_TIMEOUT_S = 120.0

Build = Callable[[Path, ShelfKey], Awaitable[None]]


async def ensure_shelf(state_dir: Path, key: ShelfKey, on_rebuild: Callable[[str], None] = lambda reason: None,
                       build: Build | None = None) -> Path:
    """A valid shelf of the standard address space for ``key``, built now if there is none; its base path.

    ``on_rebuild(reason)`` is told why a shelf is (re)built. ``build`` defaults to
    :func:`build_in_subprocess`. Raises :class:`StandardNodesCacheError` (or ``OSError``) when no valid
    shelf can be had; the caller then builds the standard nodes in memory.
    """
    path = shelf_path(state_dir, key)
    try:
        await asyncio.to_thread(check_shelf, path.parent, key)
        return path
    except StandardNodesCacheError as err:
        on_rebuild(str(err))
    await (build or build_in_subprocess)(state_dir, key)
    await asyncio.to_thread(check_shelf, path.parent, key)  # it reads back, or the caller falls back
    return path


async def build_in_subprocess(state_dir: Path, key: ShelfKey, timeout_s: float = BUILD_TIMEOUT_S) -> None:
    """Build the shelf in a child Python process, so the daemon never holds the whole standard address space.

    Built in the daemon itself the shelf would leave ~15 MB of the build's garbage in its heap for good
    (glibc rarely returns it). The child is killed if this is cancelled or takes over ``timeout_s``.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", __name__, str(state_dir), key.asyncua, key.python, str(key.protocol),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        async with timeout(timeout_s):
            _, stderr = await process.communicate()
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    if process.returncode != 0:
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise StandardNodesCacheError(f"building the shelf failed (exit {process.returncode}): {tail[0]}")


async def build_here(state_dir: Path, key: ShelfKey) -> None:
    """Build the shelf in this process (in a worker thread)."""
    await asyncio.to_thread(build_shelf, state_dir, key)


def check_shelf(directory: Path, key: ShelfKey) -> None:
    """Raise :class:`StandardNodesCacheError` unless ``directory`` holds a complete shelf for ``key``."""
    try:
        manifest = json.loads((directory / MANIFEST_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise StandardNodesCacheError(f"no shelf in {directory}") from err
    except (OSError, ValueError) as err:
        raise StandardNodesCacheError(f"unreadable manifest in {directory}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("key") != _key_fields(key):
        found = manifest.get("key") if isinstance(manifest, dict) else None
        raise StandardNodesCacheError(f"shelf in {directory} is for {found}, not {_key_fields(key)}")
    files = manifest.get("files")
    nodes = manifest.get("nodes")
    if not isinstance(files, dict) or not files or not isinstance(nodes, int) or nodes <= 0:
        raise StandardNodesCacheError(f"malformed manifest in {directory}")
    for name, digest in files.items():
        try:
            actual = _sha256(directory / name)
        except OSError as err:
            raise StandardNodesCacheError(f"shelf file {name} unreadable: {err}") from err
        if actual != digest:
            raise StandardNodesCacheError(f"shelf file {name} does not match its manifest (corrupt or changed)")
    try:
        with shelve.open(str(directory / SHELF_NAME), "r") as shelf:
            count = len(shelf)
    except Exception as err:  # dbm raises its own error types per backend
        raise StandardNodesCacheError(f"shelf in {directory} does not open: {err!r}") from err
    if count != nodes:
        raise StandardNodesCacheError(f"shelf in {directory} holds {count} nodes, its manifest says {nodes}")


def build_shelf(state_dir: Path, key: ShelfKey,
                fill: Callable[[NodeManagementService], None] | None = None) -> None:
    """Fill a scratch address space and write it as the shelf for ``key``, atomically replacing any other.

    ``fill`` populates an empty address space (default: asyncua's standard address space). Blocking.
    """
    directory = shelf_path(state_dir, key).parent
    root = directory.parent
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.iterdir():  # other versions' shelves and interrupted builds
        if stale.name != directory.name:
            shutil.rmtree(stale, ignore_errors=True)
    scratch = root / f".build-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        aspace = AddressSpace()
        (fill or fill_standard_address_space)(NodeManagementService(aspace))
        nodes = len(aspace.keys())
        aspace.make_aspace_shelf(scratch / SHELF_NAME)
        del aspace
        files = {}
        for file in sorted(scratch.iterdir()):
            fsync_path(file)
            files[file.name] = _sha256(file)
        manifest = {"key": _key_fields(key), "nodes": nodes, "files": files}
        (scratch / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        fsync_path(scratch / MANIFEST_NAME)
        shutil.rmtree(directory, ignore_errors=True)  # an invalid one: replaced, never patched
        scratch.rename(directory)
        fsync_path(root)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def fill_standard_address_space(service: NodeManagementService) -> None:
    """asyncua's generated standard address space, added to ``service``'s address space.

    Imported here, not at module level: the generated module alone costs ~10 MB of RSS once imported,
    which a gateway with a valid shelf never needs.
    """
    from asyncua.server.standard_address_space.standard_address_space import fill_address_space

    fill_address_space(service)


def load(aspace: Any, path: Path) -> None:
    """Serve ``aspace``'s standard nodes from the shelf at ``path`` (read lazily, kept once read)."""
    aspace.load_aspace_shelf(path)


def _key_fields(key: ShelfKey) -> dict[str, Any]:
    return {"asyncua": key.asyncua, "python": key.python, "protocol": key.protocol}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    """``python -m bessgw.northbound.standard_nodes STATE_DIR ASYNCUA PYTHON PROTOCOL``: build one shelf."""
    state_dir, asyncua_version, python, protocol = argv
    key = ShelfKey(asyncua=asyncua_version, python=python, protocol=int(protocol))
    if key != ShelfKey.installed():
        print(f"this interpreter would write a shelf for {ShelfKey.installed()}, not {key}", file=sys.stderr)
        return 2
    build_shelf(Path(state_dir), key)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
