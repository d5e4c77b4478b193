"""The email plugin's hooks (its entry point): the ``email`` notifier, and the ``smtp`` check when
``MEDIC_SMTP_HOST`` is set."""

from __future__ import annotations

from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import (
    HealthCheck,
    Notifier,
)
from medic_plugins.notifiers.email.notifier import EmailNotifier, SmtpHealthCheck
from medic_plugins.notifiers.email.relay import SmtpOptions


@hookimpl
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    options = SmtpOptions.from_settings(getattr(medic, "settings", None))
    return [EmailNotifier(options, getattr(medic, "clock", None))]


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    options = SmtpOptions.from_settings(getattr(medic, "settings", None))
    if not options.host:
        return []
    return [SmtpHealthCheck(options, getattr(medic, "clock", None))]
