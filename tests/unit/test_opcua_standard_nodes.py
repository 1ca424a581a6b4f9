"""The standard address space served from a shelf in the state dir: same nodes, rebuilt when it must be.

Real asyncua servers (initialised, never started: no sockets). A shelf is a file the daemon writes, so
besides "it reads like the in-memory address space" these tests damage it every way a disk or an
upgrade can (truncated, corrupt, another asyncua version, a foreign file, an interrupted build) and
check that it is rebuilt — and that with no writable state dir the server still starts.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from asyncua import Server, ua

from bessgw.northbound import standard_nodes
from bessgw.northbound.standard_nodes import CACHE_DIR_NAME, MANIFEST_NAME, ShelfKey, ensure_shelf

KEY = ShelfKey(asyncua="2.1.0-test")


def build(state_dir: Path, key: ShelfKey = KEY, reasons: list[str] | None = None) -> Path:
    """ensure_shelf, building in this process (the child-process build is tested once, below)."""
    said = reasons if reasons is not None else []
    return asyncio.run(ensure_shelf(state_dir, key, said.append, build=standard_nodes.build_here))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state dir with a shelf for KEY, built once; tests work on copies of it."""
    state_dir = tmp_path_factory.mktemp("pristine")
    build(state_dir)
    return state_dir


def copy_of(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine / CACHE_DIR_NAME, tmp_path / CACHE_DIR_NAME)
    return standard_nodes.shelf_path(tmp_path, KEY)


async def server_on(path: Path | None) -> Server:
    server = Server()
    if path is not None:
        async def from_shelf(shelf_file: Path | None = None) -> None:
            standard_nodes.load(server.iserver.aspace, path)

        server.iserver.load_standard_address_space = from_shelf  # type: ignore[method-assign]
    await server.init()
    return server


def test_a_shelf_reads_like_the_standard_address_space_and_keeps_writes(pristine: Path, tmp_path: Path) -> None:
    path = copy_of(pristine, tmp_path)

    async def scenario() -> None:
        plain, shelved = await server_on(None), await server_on(path)
        assert len(shelved.iserver.aspace.keys()) < len(plain.iserver.aspace.keys()) // 4  # lazily read
        for nodeid in (ua.NodeId(ua.ObjectIds.AnalogItemType), ua.NodeId(ua.ObjectIds.Server_ServerArray),
                       ua.NodeId(ua.ObjectIds.BaseEventType), ua.NodeId(ua.ObjectIds.HasProperty)):
            for attribute in plain.iserver.aspace[nodeid].attributes:
                expected = plain.iserver.aspace.read_attribute_value(nodeid, attribute)
                actual = shelved.iserver.aspace.read_attribute_value(nodeid, attribute)
                # timestamps say when the nodes were built: in memory now, or when the shelf was written
                assert (actual.Value, actual.StatusCode) == (expected.Value, expected.StatusCode), (nodeid, attribute)
            assert shelved.iserver.aspace[nodeid].references == plain.iserver.aspace[nodeid].references
        browsed = await shelved.nodes.types.get_children()
        assert {node.nodeid for node in browsed} == {node.nodeid for node in await plain.nodes.types.get_children()}
        name = shelved.get_node(ua.NodeId(ua.ObjectIds.Server_ServiceLevel))
        await name.write_value(ua.Variant(200, ua.VariantType.Byte))
        assert await name.read_value() == 200  # a node read from the shelf is kept, writes included
        folder = await shelved.nodes.objects.add_folder(ua.NodeId("Mine", 1), "Mine")
        assert folder.nodeid in {node.nodeid for node in await shelved.nodes.objects.get_children()}

    asyncio.run(scenario())


def test_a_valid_shelf_is_reused_as_is(tmp_path: Path) -> None:
    reasons: list[str] = []
    path = build(tmp_path, reasons=reasons)
    assert len(reasons) == 1 and "no shelf" in reasons[0]
    stamp = (path.parent / MANIFEST_NAME).stat().st_mtime_ns
    assert build(tmp_path, reasons=reasons) == path
    assert len(reasons) == 1
    assert (path.parent / MANIFEST_NAME).stat().st_mtime_ns == stamp


def test_another_asyncua_version_gets_its_own_shelf_and_the_old_one_is_removed(tmp_path: Path) -> None:
    old = build(tmp_path, ShelfKey(asyncua="1.0.0"))
    reasons: list[str] = []
    new = build(tmp_path, ShelfKey(asyncua="2.1.0"), reasons)
    assert new.parent != old.parent and reasons
    assert not old.parent.exists()
    assert [p.name for p in (tmp_path / CACHE_DIR_NAME).iterdir()] == [new.parent.name]


def test_the_installed_asyncua_version_names_the_shelf() -> None:
    from importlib.metadata import version

    assert ShelfKey.installed().asyncua == version("asyncua")
    assert version("asyncua") in ShelfKey.installed().dir_name


@pytest.mark.parametrize("damage", ["truncate", "flip", "manifest", "foreign_key", "no_manifest", "extra_node"])
def test_a_damaged_shelf_is_rebuilt_and_then_serves(pristine: Path, tmp_path: Path, damage: str) -> None:
    path = copy_of(pristine, tmp_path)
    directory = path.parent
    data = max((f for f in directory.iterdir() if f.name != MANIFEST_NAME), key=lambda f: f.stat().st_size)
    manifest = directory / MANIFEST_NAME
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "manifest":
        manifest.write_text("{not json", encoding="utf-8")
    elif damage == "foreign_key":
        content = json.loads(manifest.read_text(encoding="utf-8"))
        content["key"]["asyncua"] = "0.9"
        manifest.write_text(json.dumps(content), encoding="utf-8")
    elif damage == "no_manifest":
        manifest.unlink()
    else:
        content = json.loads(manifest.read_text(encoding="utf-8"))
        content["nodes"] += 1
        manifest.write_text(json.dumps(content), encoding="utf-8")
    reasons: list[str] = []
    assert build(tmp_path, reasons=reasons) == path
    assert len(reasons) == 1
    standard_nodes.check_shelf(directory, KEY)  # valid again

    async def serves() -> None:
        server = await server_on(path)
        assert await server.get_node(ua.NodeId(ua.ObjectIds.Server_NamespaceArray)).read_value()

    asyncio.run(serves())


def test_an_interrupted_build_leaves_no_shelf_and_is_cleaned_up_by_the_next(tmp_path: Path) -> None:
    def fails(service: object) -> None:
        standard_nodes.fill_standard_address_space(service)  # type: ignore[arg-type]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        standard_nodes.build_shelf(tmp_path, KEY, fails)
    assert not standard_nodes.shelf_path(tmp_path, KEY).parent.exists()
    (tmp_path / CACHE_DIR_NAME / ".build-999999").mkdir()  # one left by a killed process
    path = build(tmp_path)
    assert [p.name for p in (tmp_path / CACHE_DIR_NAME).iterdir()] == [path.parent.name]


def test_the_daemon_builds_its_shelf_in_a_child_process_and_serves_from_it(tmp_path: Path) -> None:
    key = ShelfKey.installed()
    reasons: list[str] = []
    path = asyncio.run(ensure_shelf(tmp_path, key, reasons.append))  # the default: a child process
    assert reasons and path == standard_nodes.shelf_path(tmp_path, key)
    standard_nodes.check_shelf(path.parent, key)

    async def serves() -> None:
        server = await server_on(path)
        assert await server.get_node(ua.NodeId(ua.ObjectIds.Server_NamespaceArray)).read_value()

    asyncio.run(serves())


def test_a_child_that_cannot_build_is_an_error_not_a_hang(tmp_path: Path) -> None:
    foreign = ShelfKey(asyncua="0.0.1")  # the child refuses to write a shelf for another asyncua version
    with pytest.raises(standard_nodes.StandardNodesCacheError, match="exit 2"):
        asyncio.run(ensure_shelf(tmp_path, foreign))


def test_the_server_starts_without_a_writable_state_dir(tmp_path: Path) -> None:
    """No shelf can be written: the standard nodes are built in memory and the server still works."""
    from bessgw.config import OpcUaSettings
    from bessgw.northbound.server import OpcUaServer
    from bessgw.unit.directory import UnitDirectory

    blocked = tmp_path / "state"
    blocked.write_text("a file where the state dir should be", encoding="utf-8")
    warnings: list[tuple[str, dict[str, object]]] = []

    class Log:
        def info(self, event: str, **fields: object) -> None:
            pass

        def warning(self, event: str, **fields: object) -> None:
            warnings.append((event, fields))

    async def scenario() -> None:
        opcua = OpcUaServer(OpcUaSettings(enabled=True, endpoint="opc.tcp://127.0.0.1:0/x", security_policies=["None"],
                                          anonymous="read", pki_dir=tmp_path / "pki"),
                            "gw", UnitDirectory(), blocked, Log())  # type: ignore[arg-type]
        server = Server()
        opcua._serve_standard_nodes_from_shelf(server)
        await server.init()
        assert len(server.iserver.aspace.keys()) > 5000  # the whole standard address space, in memory

    asyncio.run(scenario())
    assert [event for event, _ in warnings] == ["opcua_standard_nodes_cache_unusable"]
