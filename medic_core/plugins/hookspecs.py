"""Hook specifications: the reference for plugin authors.

A plugin is a module (or object) with functions decorated by ``medic_core.plugins.hookimpl``
and named after the hooks below. Publish it with an entry point in the ``medic`` group::

    [project.entry-points.medic]
    my_plugin = "my_package.plugin"

Medic's own built-ins (``medic_plugins``) are registered through that same group.
Any hook may raise: Medic logs the error, counts it in ``medic_plugin_errors_total`` and goes on
without that plugin's contribution. Hooks marked *async allowed* may return an awaitable.
Every hook that takes ``medic`` receives the running application; use only its documented
attributes (``db``, ``settings``, ``clock``, ``bus``, ``metrics``). An implementation may declare
fewer arguments than the specification (pluggy passes only those it names).

This module imports nothing of the application beyond ``interfaces``, so everything may import it.
"""

from __future__ import annotations

from typing import Any

import pluggy

from medic_core.plugins.interfaces import HealthCheck, Integration, Notifier, StepType

hookspec = pluggy.HookspecMarker("medic")
hookimpl = pluggy.HookimplMarker("medic")


@hookspec
def medic_notifiers(medic: Any) -> list[Notifier]:
    """Return the notifiers this plugin provides.

    Each notifier has a unique ``name``, a JSON Schema ``config_schema`` for a target's
    configuration and ``async send(notification)``. Example::

        @hookimpl
        def medic_notifiers(medic):
            return [TeamsNotifier()]
    """
    raise NotImplementedError


@hookspec
def medic_health_checks(medic: Any) -> list[HealthCheck]:
    """Return readiness checks, shown in ``/health/ready``.

    Each has a ``name``, ``critical`` (whether a failure makes Medic not ready) and
    ``async check() -> HealthResult``. Keep checks fast: each is given two seconds.
    """
    raise NotImplementedError


@hookspec
def medic_step_types(medic: Any) -> list[StepType]:
    """Return playbook step types (``name``, ``params_schema``, ``async run(params, context)``)."""
    raise NotImplementedError


@hookspec
def medic_integrations(medic: Any) -> list[Integration]:
    """Return integrations; their ``routes()`` are mounted under ``/integrations/<name>/``."""
    raise NotImplementedError


@hookspec
def medic_startup(medic: Any) -> Any:
    """Called once when the server has started; ``medic`` is the running application.

    Async allowed. Use it to open connections or start background work of your own.
    """


@hookspec
def medic_shutdown(medic: Any) -> Any:
    """Called once when the server stops, before the database closes. Async allowed."""


@hookspec
def medic_event(event: Any) -> Any:
    """Called for every event on the bus (``event.type`` such as ``alert.opened``), after the
    change it describes is committed. Async allowed. Runs outside any request: a slow hook only
    delays other event hooks, never ingest.
    """
