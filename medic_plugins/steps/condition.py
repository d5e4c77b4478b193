"""``condition``: poll a check until it holds, or fail at the step's timeout.

Checks: ``heartbeat_received`` (a heartbeat of the service arrived since the step started),
``service_state`` (the service is in ``state``), ``http_healthy`` (a GET of ``url``, through the
outbound guard like a webhook, answers one of ``expect_status``, default any 2xx) and
``alert_resolved`` (the alert is resolved). The service defaults to the run's service, the alert
to the run's alert. Medic's data is read through the plugin context (``run.medic.services``,
``run.medic.alerts``), never its tables.

Between two looks the step returns ``Later``: the first after ``poll.initial`` seconds, each
next one ``poll.multiplier`` times longer, at most ``poll.max``. The first call keeps, in the
step's persisted state, when the step started (``since``) and when it gives up (``until``: the
step's ``timeout``, or ``DEFAULT_GIVE_UP`` seconds when the step has none, so a condition never
polls for ever). Both survive a restart: a condition resumed on another replica goes on with the
same ``since`` (a heartbeat received while Medic was down still counts) and the same deadline.
A condition only reads, so it is idempotent: after a crash during a look it looks again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from medic_core.errors import NotFound
from medic_core.net.guard import BlockedDestination, OutboundPolicy
from medic_core.plugins.interfaces import Done, Failed, Later, Outcome, StepRun
from medic_plugins.steps._outbound import Outbound
from medic_plugins.steps._shapes import TEXT, seconds

CHECKS = ("heartbeat_received", "service_state", "http_healthy", "alert_resolved")
#: Seconds a condition polls when its step has no ``timeout``.
DEFAULT_GIVE_UP = 3600
#: Seconds one ``http_healthy`` request may take.
HTTP_TIMEOUT = 10.0
DEFAULT_POLL = {"initial": 5, "max": 60, "multiplier": 2}


def _needs(check: str, *fields: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"check": {"const": check}}, "required": ["check"]},
        "then": {"required": list(fields)},
    }


class _NotYet(Exception):
    """The check does not hold yet; the message says what was seen (for the step's output)."""


class ConditionStep:
    name = "condition"
    description = (
        "Poll until a check holds (a heartbeat received since the step started, a service "
        "state, an HTTP endpoint healthy, the alert resolved); fails at the step's timeout."
    )
    idempotent_by_default = True
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["check"],
        "properties": {
            "check": {"enum": list(CHECKS)},
            "service": {**TEXT, "description": "a service slug (default: the run's service)"},
            "alert": {
                "type": ["integer", "string"],
                "pattern": "^([0-9]{1,18}|.*[{][{].*)$",
                "minimum": 1,
                "description": "alert_resolved: an alert id (default: the run's alert)",
            },
            "state": {"enum": ["up", "late", "down", "paused", "new"]},
            "url": {"type": "string", "pattern": "^https?://", "maxLength": 2000},
            "expect_status": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "maxItems": 50,
                "description": "http_healthy: the codes that count as healthy (default any 2xx)",
            },
            "poll": {
                "type": "object",
                "properties": {
                    "initial": seconds(1, 3600, "seconds before the second look (default 5)"),
                    "max": seconds(1, 3600, "longest wait between two looks (default 60)"),
                    "multiplier": {"type": "number", "minimum": 1, "maximum": 10},
                },
                "additionalProperties": False,
            },
        },
        "allOf": [_needs("service_state", "state"), _needs("http_healthy", "url")],
        "additionalProperties": False,
    }

    def __init__(
        self, policy: OutboundPolicy | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        self._outbound = Outbound(policy, resolver=resolver)

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        now: datetime = run.clock.now()
        try:
            since = datetime.fromisoformat(str(run.state["since"]))
            until = datetime.fromisoformat(str(run.state["until"]))
        except (KeyError, ValueError):
            since = now
            until = run.deadline or now + timedelta(seconds=DEFAULT_GIVE_UP)
        polls = int(run.state.get("polls", 0)) + 1
        check = str(params["check"])
        try:
            seen = await self._look(check, params, run, since)
        except _NotYet as exc:
            seen_now = str(exc)
        except _Broken as exc:
            return Failed(str(exc), {"check": check, "polls": polls})
        else:
            return Done({"check": check, "polls": polls, **seen})
        output = {"check": check, "polls": polls, "last": seen_now}
        if now >= until:
            return Failed(f"{check} did not hold by {until.isoformat()}: {seen_now}", output)
        shape = {**DEFAULT_POLL, **(params.get("poll") or {})}
        delay = _poll_delay(
            polls, float(shape["initial"]), float(shape["max"]), float(shape["multiplier"])
        )
        state = {"since": since.isoformat(), "until": until.isoformat(), "polls": polls}
        return Later(min(now + timedelta(seconds=delay), until), state)

    async def _look(
        self, check: str, params: dict[str, Any], run: StepRun, since: datetime
    ) -> dict[str, Any]:
        """What was seen when the check holds; raises ``_NotYet`` or ``_Broken``."""
        if check == "http_healthy":
            return await self._http(params)
        if check == "alert_resolved":
            alert_id = _alert_id(params, run)
            try:
                alert = await run.medic.alerts.get(alert_id)
            except NotFound as exc:
                raise _Broken(f"alert {alert_id} does not exist") from exc
            if alert.get("state") != "resolved":
                raise _NotYet(f"alert {alert_id} is {alert.get('state')}")
            return {"alert": alert_id}
        slug = params.get("service") or run.service
        if not slug:
            raise _Broken(f"{check}: the run has no service; name one in params.service")
        try:
            service = await run.medic.services.get(str(slug))
        except NotFound as exc:
            raise _Broken(f"service {str(slug)[:200]!r} does not exist") from exc
        if check == "service_state":
            if service.get("state") != params["state"]:
                raise _NotYet(f"service {slug} is {service.get('state')}")
            return {"service": slug, "state": service["state"]}
        last = service.get("last_heartbeat_at")
        if last is None or datetime.fromisoformat(str(last)) < since:
            raise _NotYet(f"no heartbeat of {slug} since {since.isoformat()} (last: {last})")
        return {"service": slug, "heartbeat_at": last}

    async def _http(self, params: dict[str, Any]) -> dict[str, Any]:
        url = str(params["url"])
        codes = params.get("expect_status")
        try:
            checked = self._outbound.policy.check_url(url)
            async with self._outbound.session().get(
                checked,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT),
            ) as response:
                status = response.status
        except BlockedDestination as exc:
            raise _Broken(f"destination refused: {exc.reason}") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _NotYet(f"GET {url[:200]} failed: {type(exc).__name__}: {exc}") from exc
        if (status in codes) if codes else 200 <= status < 300:
            return {"status": status}
        raise _NotYet(f"GET {url[:200]} answered {status}")

    async def close(self) -> None:
        await self._outbound.close()


class _Broken(Exception):
    """The check can never hold as asked (no such service or alert, a refused destination)."""


def _poll_delay(polls: int, initial: float, most: float, multiplier: float) -> float:
    """Seconds before look ``polls + 1``: ``initial * multiplier**(polls - 1)``, at most
    ``most`` (the exponent is bounded: a condition polling for days cannot overflow)."""
    growth = max(1.0, multiplier) ** min(max(polls - 1, 0), 62)
    return max(initial, min(max(initial, most), initial * growth))


def _alert_id(params: dict[str, Any], run: StepRun) -> int:
    given = params.get("alert")
    if given is None:
        if run.alert_id is None:
            raise _Broken("alert_resolved: the run has no alert; name one in params.alert")
        return run.alert_id
    text = str(given).strip()
    if not text.isdigit() or len(text) > 18:
        raise _Broken(f"alert {text[:200]!r} is not an alert id")
    return int(text)
