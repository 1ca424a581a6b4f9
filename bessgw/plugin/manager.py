"""Building the plugin manager and collecting what the plugins register.

A factory, not a global: every caller (the daemon, the CLI, each test) builds its own manager. A plugin
that fails to import, targets an incompatible plugin-API version or raises in a registration hook is
reported (name, version, reason) and skipped; the gateway runs on with the rest.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from bessgw.errors import PluginError
from bessgw.plugin import hookspecs
from bessgw.plugin.roles import ChemistryModel, DriverSpec, SimulatorSpec, TelemetryObserver
from bessgw.plugin.version import PLUGIN_API_VERSION, api_compatible

ENTRY_POINT_GROUP = "bessgw"


@dataclass(frozen=True)
class PluginReport:
    """One row of ``bessgw plugins list``: a registered item, or a plugin that failed."""

    kind: str  # "chemistry", "driver", "simulator", "observer", or "plugin" for a failed plugin
    name: str
    plugin: str
    version: str
    api_version: str
    status: str = "ok"
    reason: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "version": self.version,
            "api_version": self.api_version,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass
class _PluginInfo:
    name: str
    version: str
    api_version: str


class PluginManager(pluggy.PluginManager):
    """pluggy's manager plus the load reports of the plugins that did not make it."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.failures: list[PluginReport] = []
        self._info: dict[str, _PluginInfo] = {}

    def register_plugin(self, plugin: object, name: str, version: str = "") -> bool:
        """Register ``plugin`` if it targets a compatible plugin-API version; report it otherwise."""
        declared = getattr(plugin, "BESSGW_PLUGIN_API", None)
        if declared is None:
            self._fail(name, version, "", "does not declare BESSGW_PLUGIN_API")
            return False
        declared = str(declared)
        if not api_compatible(declared):
            self._fail(
                name, version, declared,
                f"targets plugin API {declared}, this bessgw provides {PLUGIN_API_VERSION}",
            )
            return False
        try:
            self.register(plugin, name=name)
        except Exception as err:  # pluggy validation errors: unknown hook, bad signature
            self._fail(name, version, declared, f"rejected by the plugin manager: {err}")
            return False
        unknown = [caller.name for caller in self.get_hookcallers(plugin) or () if caller.spec is None]
        if unknown:
            self._fail(name, version, declared, f"implements unknown hook(s): {', '.join(sorted(unknown))}")
            return False
        self._info[name] = _PluginInfo(name, version, declared)
        return True

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Import and register every plugin advertised under the entry-point ``group``."""
        for entry_point in sorted(importlib.metadata.entry_points(group=group), key=lambda e: e.name):
            version = entry_point.dist.version if entry_point.dist else ""
            if self.has_plugin(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as err:
                self._fail(entry_point.name, version, "", f"import failed: {type(err).__name__}: {err}")
                continue
            self.register_plugin(plugin, entry_point.name, version)

    def load_modules(self, names: Iterable[str]) -> None:
        """Import and register plugin modules by import name (``$BESSGW_PLUGINS``, tests)."""
        for name in names:
            if self.has_plugin(name):
                continue
            try:
                module = importlib.import_module(name)
            except Exception as err:
                self._fail(name, "", "", f"import failed: {type(err).__name__}: {err}")
                continue
            self.register_plugin(module, name, str(getattr(module, "__version__", "")))

    def plugin_info(self, name: str) -> _PluginInfo:
        return self._info.get(name, _PluginInfo(name, "", PLUGIN_API_VERSION))

    def _fail(self, name: str, version: str, api_version: str, reason: str) -> None:
        self.failures.append(
            PluginReport("plugin", name, name, version, api_version, status="failed", reason=reason)
        )
        if self.has_plugin(name):
            self.unregister(name=name)

    def collect(self) -> PluginRegistry:
        """Call the registration hooks plugin by plugin, so a crash is attributed and isolated."""
        registry = PluginRegistry(failures=list(self.failures))
        self._collect_kind(registry, "register_chemistries", "chemistry", registry.chemistries,
                           lambda item: item.name, ChemistryModel)
        self._collect_kind(registry, "register_drivers", "driver", registry.drivers,
                           lambda item: item.name, DriverSpec)
        self._collect_kind(registry, "register_simulators", "simulator", registry.simulators,
                           lambda item: item.name, SimulatorSpec)
        observers: dict[str, TelemetryObserver] = {}
        self._collect_kind(registry, "register_telemetry_observers", "observer", observers,
                           lambda item: f"{type(item).__module__}.{type(item).__qualname__}",
                           TelemetryObserver)
        registry.observers = list(observers.values())
        registry.failures = list(self.failures)
        return registry

    def _collect_kind(
        self,
        registry: PluginRegistry,
        hook_name: str,
        kind: str,
        target: dict[str, Any],
        key: Callable[[Any], str],
        expected: type,
    ) -> None:
        caller = getattr(self.hook, hook_name)
        owners: dict[str, str] = {}
        for impl in reversed(caller.get_hookimpls()):  # registration order
            plugin_name = impl.plugin_name
            info = self.plugin_info(plugin_name)
            try:
                items = list(impl.function() or ())
                for item in items:
                    if not isinstance(item, expected):
                        raise TypeError(f"{hook_name} returned {type(item).__name__}, expected {expected.__name__}")
            except Exception as err:
                self._fail(plugin_name, info.version, info.api_version,
                           f"{hook_name} raised {type(err).__name__}: {err}")
                self._forget(registry, plugin_name)
                continue
            for item in items:
                item_name = key(item)
                if item_name in owners and owners[item_name] != plugin_name:
                    raise PluginError(
                        plugin_name,
                        f"{kind} {item_name!r} is registered by both {owners[item_name]!r}"
                        f" and {plugin_name!r}; uninstall one of them",
                    )
                owners[item_name] = plugin_name
                target[item_name] = item
                registry.items.append(
                    PluginReport(kind, item_name, plugin_name, info.version, info.api_version)
                )
                registry.owner[(kind, item_name)] = plugin_name

    def _forget(self, registry: PluginRegistry, plugin_name: str) -> None:
        """Drop what a failed plugin registered earlier in this collection."""
        doomed = [key for key, owner in registry.owner.items() if owner == plugin_name]
        for kind, item_name in doomed:
            del registry.owner[(kind, item_name)]
            {"chemistry": registry.chemistries, "driver": registry.drivers,
             "simulator": registry.simulators}.get(kind, {}).pop(item_name, None)
        registry.items = [item for item in registry.items if item.plugin != plugin_name]


@dataclass
class PluginRegistry:
    """What the loaded plugins registered, by id, plus the reports for ``bessgw plugins list``."""

    chemistries: dict[str, ChemistryModel] = field(default_factory=dict)
    drivers: dict[str, DriverSpec] = field(default_factory=dict)
    simulators: dict[str, SimulatorSpec] = field(default_factory=dict)
    observers: list[TelemetryObserver] = field(default_factory=list)
    items: list[PluginReport] = field(default_factory=list)
    failures: list[PluginReport] = field(default_factory=list)
    owner: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def reports(self) -> list[PluginReport]:
        return sorted(self.items, key=lambda r: (r.kind, r.name)) + self.failures


def build_plugin_manager(
    load_entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] | Iterable[ModuleType] = (),
    modules: Iterable[str] = (),
) -> PluginManager:
    """A fresh plugin manager with the entry-point plugins (and any ``plugins`` given) registered.

    :param load_entry_points: discover installed plugins through the ``bessgw`` entry-point group.
    :param plugins: extra plugins, as modules/objects or ``(name, plugin)`` pairs (tests use this).
    :param modules: extra plugin modules by import name (``$BESSGW_PLUGINS``); import errors are reported.
    """
    pm = PluginManager()
    pm.load_modules(modules)
    for plugin in plugins:
        if isinstance(plugin, tuple):
            name, obj = plugin
        else:
            obj = plugin
            name = getattr(plugin, "__name__", type(plugin).__name__)
        pm.register_plugin(obj, name, getattr(obj, "__version__", ""))
    if load_entry_points:
        pm.load_entry_points()
    pm.check_pending()
    return pm
