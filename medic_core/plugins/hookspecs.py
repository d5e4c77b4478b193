"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions decorated by ``medic_core.plugins.hookimpl``
and named after the hooks below. Publish it with an entry point in the ``medic`` group::

    [project.entry-points.medic]
    my_plugin = "my_package.plugin"

Medic's own built-ins (``medic_plugins``) are registered through that same group.
Any hook may raise: Medic logs the error, counts it in ``medic_plugin_errors_total`` and goes on
without that plugin's contribution. Hooks marked *async allowed* may return an awaitable.
Every hook that takes ``medic`` receives the plugin context, ``PluginContext``
(``medic_core.plugins.context``): ``settings``, ``clock``, ``db``, ``bus``, ``metrics`` and the
domain actions ``alerts`` (acknowledge, resolve) and ``services`` (read one). That is the whole of
what a plugin may use of the application; Medic's own plugins use nothing else. An implementation
may declare fewer arguments than the specification (pluggy passes only those it names).

This module imports nothing of the application beyond ``interfaces`` and ``context`` (whose types
are for type checkers only), so everything may import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthCheck, Integration, Notifier, StepType

if TYPE_CHECKING:
    from medic_core.events import Event

hookspec = pluggy.HookspecMarker("medic")
hookimpl = pluggy.HookimplMarker("medic")


@hookspec
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    """Return the notifiers this plugin provides.

    Each notifier has a unique ``name``, a JSON Schema ``config_schema`` for a target's
    configuration and ``async send(notification)``. Example::

        @hookimpl
        def medic_notifiers(medic):
            return [TeamsNotifier()]
    """
    raise NotImplementedError


@hookspec
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    """Return readiness checks, shown in ``/health/ready``.

    Each has a ``name``, ``critical`` (whether a failure makes Medic not ready) and
    ``async check() -> HealthResult``. Keep checks fast: each is given two seconds.
    """
    raise NotImplementedError


@hookspec
def medic_step_types(medic: PluginContext) -> list[StepType]:
    """Return playbook step types (``name``, ``description``, ``params_schema``).

    Called once, when the application is built (and by ``medic playbook validate``, offline:
    then ``medic`` holds ``settings``, ``clock`` and ``metrics`` only). A name offered by two
    plugins, or a ``params_schema`` that is not a valid JSON Schema, stops Medic at start-up.
    A step type with ``advance`` runs (``StepType``, docs/plugins.md).
    """
    raise NotImplementedError


@hookspec
def medic_integrations(medic: PluginContext) -> list[Integration]:
    """Return integrations; their ``routes()`` are mounted under ``/integrations/<name>/``."""
    raise NotImplementedError


@hookspec
def medic_startup(medic: PluginContext) -> Any:
    """Called once when the server has started, just before the HTTP server listens.

    Async allowed. Use it to open connections or start background work of your own.
    """


@hookspec
def medic_shutdown(medic: PluginContext) -> Any:
    """Called once when the server stops, before the database closes. Async allowed."""


@hookspec
def medic_event(event: Event) -> Any:
    """Called for every event on the bus (``event.type`` such as ``alert.opened``), after the
    change it describes is committed. Async allowed. Runs outside any request: a slow hook only
    delays other event hooks, never ingest.
    """
