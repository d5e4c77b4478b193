"""Loads plugins and calls their hooks, one implementation at a time.

pluggy stops a hook call at the first exception; Medic instead calls every implementation
separately, so one failing plugin is logged and counted (``medic_plugin_errors_total``) and the
others still run. Entry points that fail to import are recorded the same way and skipped.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pluggy

from medic_core.observability.metrics import Metrics
from medic_core.plugins import hookspecs
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthCheck, Integration, Notifier, StepType

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "medic"


@dataclass(frozen=True, slots=True)
class PluginInfo:
    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LoadFailure:
    name: str
    error: str


class PluginManager:
    def __init__(
        self,
        metrics: Metrics,
        *,
        entry_points: bool = True,
        plugins: Iterable[tuple[str, object]] = (),
        disabled: Iterable[str] = (),
    ) -> None:
        self._metrics = metrics
        self._pm = pluggy.PluginManager("medic")
        self._pm.add_hookspecs(hookspecs)
        self._dists: dict[str, tuple[str, str]] = {}
        self.failures: list[LoadFailure] = []
        self._disabled = set(disabled)
        if entry_points:
            self._load_entry_points()
        for name, plugin in plugins:
            self.register(plugin, name)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in self._disabled or self._pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                self._failed(ep.name, "load", exc)
                continue
            self.register(plugin, ep.name)
            if ep.dist is not None:
                self._dists[ep.name] = (ep.dist.name, ep.dist.version)

    def register(self, plugin: object, name: str) -> None:
        try:
            self._pm.register(plugin, name=name)
        except Exception as exc:
            self._failed(name, "register", exc)

    def record_failure(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Record a plugin's failure found outside a hook call (e.g. its routes are invalid)."""
        self._failed(plugin, hook, exc)

    def _failed(self, plugin: str, hook: str, exc: BaseException) -> None:
        self._metrics.plugin_errors.labels(plugin, hook).inc()
        self.failures.append(LoadFailure(plugin, f"{hook}: {type(exc).__name__}: {exc}"))
        log.error("plugin %s failed in %s", plugin, hook, exc_info=exc)

    def describe(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self._pm.list_name_plugin()):
            hooks = tuple(sorted(h.name for h in self._pm.get_hookcallers(plugin) or []))
            dist, version = self._dists.get(name, (None, None))
            module = getattr(plugin, "__name__", type(plugin).__module__)
            infos.append(PluginInfo(name, module, dist, version, hooks))
        return infos

    def call(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook``; return ``(plugin name, result)`` pairs.

        Failures are isolated; results may be awaitables (see ``acall``).
        """
        results = []
        caller = getattr(self._pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            try:
                args = {k: kwargs[k] for k in impl.argnames}
                results.append((impl.plugin_name, impl.function(**args)))
            except Exception as exc:
                self._failed(impl.plugin_name, hook, exc)
        return results

    async def acall(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Like ``call``, awaiting implementations that return awaitables."""
        results = []
        for name, result in self.call(hook, **kwargs):
            if inspect.isawaitable(result):
                try:
                    result = await result
                except Exception as exc:
                    self._failed(name, hook, exc)
                    continue
            results.append((name, result))
        return results

    def _offered(self, hook: str, kind: type, medic: Any) -> list[tuple[str, Any]]:
        """``(plugin name, item)`` for every well-formed item a list hook returned."""
        offered: list[tuple[str, Any]] = []
        for plugin, items in self.call(hook, medic=medic):
            if inspect.iscoroutine(items):
                items.close()
                self._failed(plugin, hook, TypeError(f"{hook} must be a plain function, not async"))
                continue
            if not isinstance(items, list | tuple):
                if items is not None:
                    self._failed(plugin, hook, TypeError(f"{hook} must return a list"))
                continue
            for item in items:
                name = getattr(item, "name", None)
                if not isinstance(item, kind) or not isinstance(name, str):
                    self._failed(plugin, hook, TypeError(f"{item!r} is not a {kind.__name__}"))
                else:
                    offered.append((plugin, item))
        return offered

    def _collect(self, hook: str, kind: type, medic: PluginContext) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for plugin, item in self._offered(hook, kind, medic):
            if item.name in found:
                self._failed(plugin, hook, ValueError(f"duplicate {hook} name {item.name!r}"))
            else:
                found[item.name] = item
        return found

    def notifiers(self, medic: PluginContext) -> dict[str, Notifier]:
        return self._collect("medic_notifiers", Notifier, medic)

    def health_checks(self, medic: PluginContext) -> dict[str, HealthCheck]:
        return self._collect("medic_health_checks", HealthCheck, medic)

    def step_types(self, medic: Any) -> list[tuple[str, StepType]]:
        """``(plugin name, step type)`` for every step type offered, clashes included: a name
        offered twice is a start-up error (``medic_core.playbooks.steptypes``), not a failure
        to isolate, since playbooks already saved may use either. ``medic`` is the plugin
        context (offline validation passes a smaller one: settings, clock, metrics)."""
        return self._offered("medic_step_types", StepType, medic)

    def integrations(self, medic: PluginContext) -> dict[str, Integration]:
        return self._collect("medic_integrations", Integration, medic)
