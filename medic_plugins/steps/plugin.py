"""The built-in step types' plugin (entry point ``steps`` in ``pyproject.toml``)."""

from __future__ import annotations

from medic_core.net.guard import OutboundPolicy
from medic_core.plugins import hookimpl
from medic_core.plugins.context import PluginContext
from medic_core.plugins.interfaces import StepType
from medic_core.settings import Settings
from medic_plugins.steps.approval import ApprovalStep
from medic_plugins.steps.condition import ConditionStep
from medic_plugins.steps.notify import NotifyStep
from medic_plugins.steps.script import ScriptStep
from medic_plugins.steps.wait import WaitStep
from medic_plugins.steps.webhook import WebhookStep


@hookimpl
def medic_step_types(medic: PluginContext) -> list[StepType]:
    settings = getattr(medic, "settings", None) or Settings()
    policy = OutboundPolicy.from_settings(settings)
    return [
        WebhookStep(policy),
        WaitStep(),
        ConditionStep(policy),
        ScriptStep(),
        NotifyStep(),
        ApprovalStep(),
    ]
