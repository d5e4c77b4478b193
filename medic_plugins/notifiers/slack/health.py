"""``SlackCheck``: the readiness check for Slack (the bot token is accepted by ``auth.test``)."""

from __future__ import annotations

from medic_core.plugins.interfaces import DeliveryError, HealthResult
from medic_plugins.notifiers.slack.client import SlackWebApi


class SlackCheck:
    """Readiness: the bot token is accepted (``auth.test``). Not critical: Medic keeps working."""

    name = "slack"
    critical = False

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self._base_url, self._token, self._timeout = base_url, token, timeout

    async def check(self) -> HealthResult:
        # A session of its own, closed at once: health checks have no shutdown hook.
        api = SlackWebApi(self._base_url, self._token, timeout=self._timeout)
        try:
            who = await api.call("auth.test")
        except DeliveryError as exc:
            return HealthResult("down", str(exc)[:300])
        finally:
            await api.close()
        return HealthResult("ok", f"team {who.get('team', '?')}, bot {who.get('user', '?')}")
