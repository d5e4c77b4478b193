"""The ``slack`` plugin's hooks: the settings (``MEDIC_SLACK_*``) wired to the notifier, the
readiness check and the interactivity integration. This module is the ``slack`` entry point."""

from __future__ import annotations

from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import HealthCheck, Integration, Notifier
from medic_plugins.notifiers.slack.client import SlackWebApi
from medic_plugins.notifiers.slack.health import SlackCheck
from medic_plugins.notifiers.slack.interactivity import SlackInteractivity
from medic_plugins.notifiers.slack.notifier import SlackNotifier


@hookimpl
def medic_notifiers(medic: PluginContext) -> list[Notifier]:
    s = medic.settings
    api = SlackWebApi(s.slack_api_url, s.slack_bot_token, timeout=s.notify_timeout)
    return [SlackNotifier(api)]


@hookimpl
def medic_health_checks(medic: PluginContext) -> list[HealthCheck]:
    s = medic.settings
    if not s.slack_bot_token:
        return []
    # Readiness gives each check two seconds; stay under it to report Slack's own error.
    return [SlackCheck(s.slack_api_url, s.slack_bot_token, min(s.notify_timeout, 1.5))]


@hookimpl
def medic_integrations(medic: PluginContext) -> list[Integration]:
    return [SlackInteractivity(medic)]
