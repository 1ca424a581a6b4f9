"""Plugin discovery, API-version checks, failure isolation and duplicate ids."""

from __future__ import annotations

import types

import pytest

from bessgw.errors import PluginError
from bessgw.plugin import ChemistryModel, hookimpl
from bessgw.plugin.manager import build_plugin_manager
from bessgw.plugin.version import api_compatible


def test_entry_points_bring_the_four_chemistries() -> None:
    registry = build_plugin_manager().collect()
    assert {"lfp", "nmc", "lto", "vrfb"} <= set(registry.chemistries)
    rows = {(r.kind, r.name): r for r in registry.reports}
    assert rows[("chemistry", "lfp")].plugin == "chemistry"
    assert rows[("chemistry", "lfp")].api_version == "1.0"
    assert rows[("chemistry", "lfp")].status == "ok"


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("bessgw_test_broken_import", "import failed: RuntimeError: deliberately broken at import"),
        ("bessgw_test_broken_hook", "register_drivers raised RuntimeError: deliberately broken hook"),
        ("bessgw_test_future_api", "targets plugin API 2.0, this bessgw provides 1.0"),
        ("bessgw_no_such_module", "import failed: ModuleNotFoundError"),
    ],
)
def test_broken_plugin_is_reported_and_skipped(plugin_path, module: str, reason: str) -> None:
    pm = build_plugin_manager(load_entry_points=True, modules=[module, "bessgw_example"])
    registry = pm.collect()
    (failure,) = registry.failures
    assert (failure.name, failure.status) == (module, "failed")
    assert reason in failure.reason
    assert "in_memory" in registry.drivers  # the others still load
    assert "lfp" in registry.chemistries


def test_plugin_without_api_declaration_is_refused() -> None:
    plugin = types.SimpleNamespace(register_drivers=hookimpl(lambda: []))
    pm = build_plugin_manager(load_entry_points=False, plugins=[("undeclared", plugin)])
    (failure,) = pm.collect().failures
    assert failure.reason == "does not declare BESSGW_PLUGIN_API"


def test_plugin_with_unknown_hook_is_refused() -> None:
    plugin = types.SimpleNamespace(BESSGW_PLUGIN_API="1.0", register_drivres=hookimpl(lambda: []))
    pm = build_plugin_manager(load_entry_points=False, plugins=[("typo", plugin)])
    (failure,) = pm.collect().failures
    assert "unknown hook(s): register_drivres" in failure.reason


def test_hook_returning_wrong_type_is_reported() -> None:
    plugin = types.SimpleNamespace(BESSGW_PLUGIN_API="1.0", register_chemistries=hookimpl(lambda: ["lfp"]))
    pm = build_plugin_manager(load_entry_points=False, plugins=[("wrongtype", plugin)])
    (failure,) = pm.collect().failures
    assert "returned str, expected ChemistryModel" in failure.reason


def test_duplicate_chemistry_names_both_plugins() -> None:
    from bessgw_chemistry.plugin import register_chemistries

    lfp = next(c for c in register_chemistries() if c.name == "lfp")
    clone = types.SimpleNamespace(BESSGW_PLUGIN_API="1.0", register_chemistries=hookimpl(lambda: [lfp]))
    pm = build_plugin_manager(load_entry_points=True, plugins=[("lfp_clone", clone)])
    with pytest.raises(PluginError) as info:
        pm.collect()
    assert "'chemistry'" in str(info.value) and "'lfp_clone'" in str(info.value)
    assert "chemistry 'lfp' is registered by both" in str(info.value)


def test_managers_are_independent() -> None:
    first = build_plugin_manager(load_entry_points=False)
    second = build_plugin_manager(load_entry_points=True)
    assert first is not second
    assert not first.collect().chemistries
    assert isinstance(second.collect().chemistries["lfp"], ChemistryModel)


@pytest.mark.parametrize(
    ("declared", "ok"),
    [("1.0", True), ("1", True), ("1.1", False), ("0.9", False), ("2.0", False), ("one", False)],
)
def test_api_compatibility_rule(declared: str, ok: bool) -> None:
    assert api_compatible(declared, "1.0") is ok
