"""The plugin system (pluggy, project name ``medic``).

``hookspecs`` is the reference for plugin authors; ``interfaces`` holds the objects plugins hand
back (notifiers, health checks, step types, integrations); ``manager`` loads and calls them.
"""

from medic_core.plugins.hookspecs import hookimpl

__all__ = ["hookimpl"]
