"""A local PagerDuty Events API v2 (``POST /v2/enqueue``) that checks events as PagerDuty does.

Usage::

    async with FakePagerDuty() as pd:
        settings = Settings.load({}, pagerduty_events_url=pd.url)
        ...
        pd.requests            # every JSON body received, in order (also the rejected ones)
        pd.alerts              # dedup_key -> FakeAlert (status, triggers, the last payload)
        pd.open_alerts()       # the alerts currently triggered or acknowledged
        pd.fail_next(429, times=2, retry_after="7")   # then behave normally again

Validation follows the Events API v2 reference: ``routing_key`` a string of exactly 32
characters, ``event_action`` one of trigger/acknowledge/resolve, ``dedup_key`` at most 255
characters (required for acknowledge/resolve), and for ``trigger`` a ``payload`` with
``summary`` (≤ 1024), ``source`` and ``severity`` in critical/error/warning/info; ``links`` and
``images`` must be lists of objects with ``href``/``src``. Invalid events get
``400 {"status": "invalid event", "message": "Event object is invalid", "errors": [...]}``;
valid ones ``202 {"status": "success", "message": "Event processed", "dedup_key": ...}``.

Dedup semantics: a trigger whose dedup_key names an open (triggered or acknowledged) alert adds to
it instead of opening a second; acknowledge and resolve act on the open alert and are dropped
(still 202) when there is none; after a resolve, a trigger with the same key opens a new alert.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class FakeAlert:
    dedup_key: str
    routing_key: str
    number: int
    status: str = "triggered"
    triggers: int = 1
    payload: dict[str, Any] = field(default_factory=dict)
    history: list[str] = field(default_factory=lambda: ["trigger"])


def validate_event(event: Any) -> list[str]:
    """PagerDuty's checks on one event; the list of error strings (empty when valid)."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = event.get("routing_key")
    if not isinstance(key, str):
        errors.append("'routing_key' is missing or blank")
    elif len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not dedup):
        errors.append("'dedup_key' must be a non-empty string")
    elif isinstance(dedup, str) and len(dedup) > 255:
        errors.append("'dedup_key' is too long (maximum is 255 characters)")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve events")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or not an object")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary:
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > 1024:
                errors.append("'payload.summary' is too long (maximum is 1024 characters)")
            if not isinstance(payload.get("source"), str) or not payload.get("source"):
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append(
                    "'payload.severity' is invalid (must be one of: critical, error, warning, info)"
                )
            details = payload.get("custom_details")
            if details is not None and not isinstance(details, dict | str):
                errors.append("'payload.custom_details' must be an object")
        for name, required in (("links", "href"), ("images", "src")):
            items = event.get(name)
            if items is None:
                continue
            if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get(required), str) for i in items
            ):
                errors.append(f"'{name}' must be a list of objects with '{required}'")
    return errors


class FakePagerDuty:
    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self.alerts: dict[str, FakeAlert] = {}
        self.resolved: list[FakeAlert] = []
        self.dropped: list[dict[str, Any]] = []
        self._failures: list[tuple[int, str | None]] = []
        self._numbers = 0
        app = web.Application()
        app.router.add_post("/v2/enqueue", self._enqueue)
        self._server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self._server.make_url("/v2/enqueue"))

    async def start(self) -> FakePagerDuty:
        await self._server.start_server()
        return self

    async def close(self) -> None:
        await self._server.close()

    async def __aenter__(self) -> FakePagerDuty:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def fail_next(self, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """Answer the next ``times`` requests with ``status`` (and ``Retry-After``)."""
        self._failures.extend([(status, retry_after)] * times)

    def open_alerts(self) -> list[FakeAlert]:
        return [a for a in self.alerts.values() if a.status != "resolved"]

    async def _enqueue(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.headers.append(dict(request.headers))
        if self._failures:
            status, retry_after = self._failures.pop(0)
            self.requests.append(None)
            headers = {"Retry-After": retry_after} if retry_after else {}
            if status == 429:
                return web.Response(status=429, text="", headers=headers)
            return web.json_response(
                {"status": "error", "message": "Internal error"}, status=status, headers=headers
            )
        try:
            event = json.loads(raw)
        except ValueError:
            self.requests.append(raw)
            return self._invalid(["Event object is not valid JSON"])
        self.requests.append(event)
        if request.content_type != "application/json":
            return self._invalid(["Content-Type must be application/json"])
        errors = validate_event(event)
        if errors:
            return self._invalid(errors)
        dedup = event.get("dedup_key") or uuid.uuid4().hex
        self._apply(event, dedup)
        return web.json_response(
            {"status": "success", "message": "Event processed", "dedup_key": dedup}, status=202
        )

    @staticmethod
    def _invalid(errors: list[str]) -> web.Response:
        return web.json_response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
            status=400,
        )

    def _apply(self, event: dict[str, Any], dedup: str) -> None:
        action = event["event_action"]
        alert = self.alerts.get(dedup)
        if alert is not None and alert.routing_key != event["routing_key"]:
            alert = None  # events only apply through the routing key that opened the alert
        if action == "trigger":
            if alert is not None and alert.status != "resolved":
                alert.triggers += 1
                alert.payload = event["payload"]
                alert.history.append("trigger")
                return
            if alert is not None:
                self.resolved.append(alert)
            self._numbers += 1
            self.alerts[dedup] = FakeAlert(
                dedup, event["routing_key"], self._numbers, payload=event["payload"]
            )
            return
        if alert is None or alert.status == "resolved":
            self.dropped.append(event)
            return
        alert.history.append(action)
        if action == "acknowledge":
            alert.status = "acknowledged"
        else:
            alert.status = "resolved"
