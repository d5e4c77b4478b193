"""The plugin system (pluggy, project name ``medic``).

``hookspecs`` is the reference for plugin authors; ``context`` describes what hooks receive (the
``PluginContext``: settings, clock, database, bus, metrics, alert and service actions);
``interfaces`` holds the objects plugins hand back (notifiers, health checks, step types,
integrations); ``manager`` loads and calls them.

The plugin surface — everything a plugin (Medic's own ``medic_plugins`` included) may import of
Medic — is ``PLUGIN_SURFACE``; ``tests/unit/test_plugin_imports.py`` holds ``medic_plugins`` to it.
Anything else is Medic's inside and may change in any release.
"""

from typing import Final

from medic_core.plugins.hookspecs import hookimpl

#: Every module of Medic a plugin may import (the module itself, or names from it). Anything else,
#: ``medic_core.server`` first of all, is Medic's inside.
PLUGIN_SURFACE: Final = (
    "medic_core",  # __version__
    "medic_core.plugins",  # hookimpl
    "medic_core.plugins.hookspecs",  # the hooks, as reference
    "medic_core.plugins.context",  # PluginContext (what hooks receive), AlertActions, ServiceReader
    "medic_core.plugins.interfaces",  # Notifier, HealthCheck, StepType, Done/Failed/Later, ...
    "medic_core.requests",  # REQUEST_ID, json_body, json_any: for integration handlers
    "medic_core.errors",  # NotFound, Conflict (raised by the actions), BadRequest, ...
    "medic_core.audit",  # Actor: who acts, for the alert actions
    "medic_core.events",  # Event: what medic_event receives
    "medic_core.clock",  # Clock, SystemClock, isoformat
    "medic_core.settings",  # Settings: the type of the context's settings
    "medic_core.net.guard",  # outbound requests: the private-address guard, Retry-After
)

__all__ = ["PLUGIN_SURFACE", "hookimpl"]
