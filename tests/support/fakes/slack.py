"""A fake Slack Web API on 127.0.0.1 that checks what Medic sends, and Slack's request signing.

Typical use::

    async with FakeSlack(token="xoxb-test") as slack:
        settings = Settings.load({}, slack_api_url=slack.api_url, slack_bot_token=slack.token)
        ...
        slack.calls("chat.postMessage")     # the JSON bodies Medic posted, in order
        slack.fail_next(status=429, retry_after=7)           # the next request is rate limited
        slack.fail_next(2, error="channel_not_found")       # the next two get {"ok": false}
        assert slack.violations == []       # wire-format mistakes Medic made (checked on exit)

It implements ``auth.test``, ``conversations.info``, ``chat.postMessage`` and ``chat.update`` the
way the Web API documents them: every call is a POST to ``<api_url>/<method>`` with
``Authorization: Bearer <token>``; write methods take ``application/json; charset=utf-8``, read
methods a form (``application/x-www-form-urlencoded``). Errors are HTTP 200 with
``{"ok": false, "error": "..."}``; rate limits are HTTP 429 with ``Retry-After`` seconds.

What is a *violation* (Medic's bug, recorded and answered the way Slack answers it): a non-POST,
a missing or malformed ``Authorization`` header, a JSON body to a read method or without charset,
a body that is not a JSON object, a missing ``channel``, a message with neither ``text`` nor
``blocks``/``attachments``, ``chat.update`` without ``ts``, and Block Kit that Slack would reject
(unknown block types, missing ``type``, header/field/button text over Slack's limits, buttons
without ``action_id``, action buttons without ``value``, duplicate ``action_id`` in a message,
non-http(s) button URLs). A *wrong* token is not a violation: Slack answers ``invalid_auth``.

``sign_request`` signs an interactivity request as Slack does (written from Slack's
"verifying requests" documentation, independently of Medic's verifier).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from aiohttp import web

WRITE_METHODS = ("chat.postMessage", "chat.update")
READ_METHODS = ("auth.test", "conversations.info")
BLOCK_TYPES = {"header", "section", "context", "actions", "divider", "image", "rich_text"}


@dataclass
class SlackRequest:
    method: str  # the Web API method, e.g. "chat.postMessage"
    http_method: str
    headers: dict[str, str]
    body: dict[str, Any]  # the JSON object or the form fields
    raw: bytes


@dataclass
class _Failure:
    status: int = 200
    error: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    method: str | None = None


@dataclass
class Channel:
    id: str
    name: str
    is_member: bool = True
    is_archived: bool = False
    is_private: bool = False


@dataclass
class FakeSlack:
    token: str = "xoxb-1111-2222-fake"
    team: str = "Medic Test Team"
    bot_user: str = "medic"
    channels: list[Channel] = field(
        default_factory=lambda: [
            Channel("C0ALERTS01", "alerts"),
            Channel("C0OUTSIDE1", "outside", is_member=False),
            Channel("C0ARCHIVED", "old-alerts", is_archived=True),
        ]
    )
    requests: list[SlackRequest] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    #: (channel id, ts) -> the message as last posted or updated
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    _port: int = 0
    _seq: int = 100

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/api"

    # -- test controls -----------------------------------------------------------------------

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 200,
        error: str | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        method: str | None = None,
    ) -> None:
        """Fail the next ``count`` requests (to ``method`` only, if given).

        ``status=429`` rate-limits (``Retry-After: retry_after``), ``status=500`` answers a bare
        server error, ``error="channel_not_found"`` answers HTTP 200 ``{"ok": false, ...}``,
        ``delay`` sleeps before answering normally (for timeouts).
        """
        for _ in range(count):
            self._failures.append(_Failure(status, error, retry_after, delay, method))

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r.body for r in self.requests if r.method == method]

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        return self.messages[(channel, ts)]

    # -- the API -------------------------------------------------------------------------------

    def _violation(self, text: str) -> None:
        self.violations.append(text)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        raw = await request.read()
        body = self._parse(method, request, raw)
        self.requests.append(
            SlackRequest(method, request.method, dict(request.headers), body or {}, raw)
        )
        if request.method != "POST":
            self._violation(f"{method}: HTTP {request.method}, Medic must POST")
            return web.Response(status=405)
        if method not in WRITE_METHODS + READ_METHODS:
            return _error("unknown_method")
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer xoxb-"):
            self._violation(f"{method}: Authorization is {auth!r}, not 'Bearer xoxb-...'")
            return _error("not_authed")
        failure = self._take_failure(method)
        if failure is not None:
            if failure.delay:
                await asyncio.sleep(failure.delay)
            elif failure.status == 429:
                headers = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = f"{failure.retry_after:g}"
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers=headers
                )
            elif failure.status != 200:
                return web.Response(status=failure.status, text="upstream trouble")
            else:
                return _error(failure.error or "internal_error")
        if auth != f"Bearer {self.token}":
            return _error("invalid_auth")
        if body is None:
            return _error("invalid_form_data" if method in READ_METHODS else "invalid_json")
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://medic-test.slack.invalid/",
                    "team": self.team,
                    "user": self.bot_user,
                    "team_id": "T0TEAM0001",
                    "user_id": "U0MEDICBOT",
                    "bot_id": "B0MEDICBOT",
                }
            )
        if method == "conversations.info":
            channel = self._channel(str(body.get("channel", "")), by_name=False)
            if channel is None:
                return _error("channel_not_found")
            return web.json_response(
                {
                    "ok": True,
                    "channel": {
                        "id": channel.id,
                        "name": channel.name,
                        "is_channel": True,
                        "is_private": channel.is_private,
                        "is_archived": channel.is_archived,
                        "is_member": channel.is_member,
                    },
                }
            )
        return self._chat(method, body)

    def _parse(self, method: str, request: web.Request, raw: bytes) -> dict[str, Any] | None:
        content_type = request.headers.get("Content-Type", "")
        if method in READ_METHODS:
            if content_type.startswith("application/json"):
                self._violation(f"{method} does not accept JSON bodies; send a form")
                return None
            if raw and not content_type.startswith("application/x-www-form-urlencoded"):
                self._violation(f"{method}: Content-Type {content_type!r}, expected a form")
                return None
            return {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        if not raw:
            self._violation(f"{method}: empty body")
            return None
        if content_type.replace(" ", "").lower() != "application/json;charset=utf-8":
            self._violation(
                f"{method}: Content-Type {content_type!r}, expected "
                "'application/json; charset=utf-8'"
            )
        try:
            data = json.loads(raw)
        except ValueError:
            self._violation(f"{method}: the body is not JSON")
            return None
        if not isinstance(data, dict):
            self._violation(f"{method}: the body is not a JSON object")
            return None
        return data

    def _take_failure(self, method: str) -> _Failure | None:
        for index, failure in enumerate(self._failures):
            if failure.method in (None, method):
                return self._failures.pop(index)
        return None

    def _channel(self, ref: str, *, by_name: bool) -> Channel | None:
        for channel in self.channels:
            if ref == channel.id or (by_name and ref == f"#{channel.name}"):
                return channel
        return None

    def _chat(self, method: str, body: dict[str, Any]) -> web.Response:
        channel_ref = body.get("channel")
        if not isinstance(channel_ref, str) or not channel_ref:
            self._violation(f"{method}: no channel")
            return _error("channel_not_found")
        if not any(body.get(k) for k in ("text", "blocks", "attachments")):
            self._violation(f"{method}: neither text nor blocks nor attachments")
            return _error("no_text")
        problems = _block_problems(body)
        if problems:
            for problem in problems:
                self._violation(f"{method}: {problem}")
            return _error("invalid_blocks")
        # chat.update needs the channel id; chat.postMessage also takes #name.
        channel = self._channel(channel_ref, by_name=method == "chat.postMessage")
        if channel is None:
            return _error("channel_not_found")
        if channel.is_archived:
            return _error("is_archived")
        message = {k: body[k] for k in ("text", "blocks", "attachments", "thread_ts") if k in body}
        if method == "chat.update":
            ts = body.get("ts")
            if not isinstance(ts, str) or not ts:
                self._violation("chat.update: no ts")
                return _error("message_not_found")
            if (channel.id, ts) not in self.messages:
                return _error("message_not_found")
        else:
            if not channel.is_member:
                return _error("not_in_channel")
            self._seq += 1
            ts = f"1700000000.{self._seq:06d}"
            thread_ts = body.get("thread_ts")
            if thread_ts is not None and (channel.id, thread_ts) not in self.messages:
                self._violation(f"chat.postMessage: thread_ts {thread_ts!r} is no message")
        self.messages[(channel.id, ts)] = message
        return web.json_response(
            {
                "ok": True,
                "channel": channel.id,
                "ts": ts,
                "text": body.get("text", ""),
                "message": {"type": "message", "user": "U0MEDICBOT", "ts": ts, **message},
            }
        )


def _error(error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error})


def _block_problems(body: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    text = body.get("text")
    if text is not None and (not isinstance(text, str) or len(text) > 40_000):
        problems.append("text must be a string of at most 40000 characters")
    block_lists: list[tuple[str, Any]] = []
    if "blocks" in body:
        block_lists.append(("blocks", body["blocks"]))
    attachments = body.get("attachments")
    if attachments is not None:
        if not isinstance(attachments, list) or len(attachments) > 20:
            return ["attachments must be a list of at most 20"]
        for i, attachment in enumerate(attachments):
            if not isinstance(attachment, dict):
                problems.append(f"attachments[{i}] is not an object")
                continue
            color = attachment.get("color")
            if color is not None and not (
                isinstance(color, str) and len(color) == 7 and color.startswith("#")
            ):
                problems.append(f"attachments[{i}].color {color!r} is not #rrggbb")
            if "blocks" in attachment:
                block_lists.append((f"attachments[{i}].blocks", attachment["blocks"]))
    action_ids: set[str] = set()
    for where, blocks in block_lists:
        if not isinstance(blocks, list) or len(blocks) > 50:
            problems.append(f"{where} must be a list of at most 50 blocks")
            continue
        for i, block in enumerate(blocks):
            problems += _block(f"{where}[{i}]", block, action_ids)
    return problems


def _plain(where: str, value: Any, limit: int) -> list[str]:
    if not isinstance(value, dict) or value.get("type") != "plain_text":
        return [f"{where} must be a plain_text object"]
    text = value.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        return [f"{where}.text must be 1-{limit} characters"]
    return []


def _text_object(where: str, value: Any, limit: int) -> list[str]:
    if not isinstance(value, dict) or value.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where} must be a plain_text or mrkdwn text object"]
    text = value.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= limit:
        return [f"{where}.text must be 1-{limit} characters"]
    return []


def _block(where: str, block: Any, action_ids: set[str]) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return [f"{where} has no type"]
    kind = block["type"]
    if kind not in BLOCK_TYPES:
        return [f"{where}: unknown block type {kind!r}"]
    problems: list[str] = []
    if kind == "header":
        problems += _plain(f"{where}.text", block.get("text"), 150)
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(f"{where}: a section needs text or fields")
        if "text" in block:
            problems += _text_object(f"{where}.text", block["text"], 3000)
        fields = block.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 10:
            problems.append(f"{where}.fields must be a list of at most 10")
        else:
            for j, item in enumerate(fields):
                problems += _text_object(f"{where}.fields[{j}]", item, 2000)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
            problems.append(f"{where}.elements must be a list of 1-10")
        else:
            for j, item in enumerate(elements):
                problems += _text_object(f"{where}.elements[{j}]", item, 3000)
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= 25:
            problems.append(f"{where}.elements must be a list of 1-25")
        else:
            for j, item in enumerate(elements):
                problems += _button(f"{where}.elements[{j}]", item, action_ids)
    return problems


def _button(where: str, button: Any, action_ids: set[str]) -> list[str]:
    if not isinstance(button, dict) or button.get("type") != "button":
        return [f"{where} is not a button"]
    problems = _plain(f"{where}.text", button.get("text"), 75)
    action_id = button.get("action_id")
    if not isinstance(action_id, str) or not 1 <= len(action_id) <= 255:
        problems.append(f"{where} has no action_id")
    elif action_id in action_ids:
        problems.append(f"{where}: duplicate action_id {action_id!r}")
    else:
        action_ids.add(action_id)
    url = button.get("url")
    if url is None:
        value = button.get("value")
        if not isinstance(value, str) or not 1 <= len(value) <= 2000:
            problems.append(f"{where}: an action button needs a value (1-2000 characters)")
    elif not isinstance(url, str) or not url.startswith(("http://", "https://")) or len(url) > 3000:
        problems.append(f"{where}.url {url!r} is not an http(s) URL")
    if button.get("style") not in (None, "primary", "danger"):
        problems.append(f"{where}.style must be primary or danger")
    return problems


# -- interactivity ---------------------------------------------------------------------------------


def block_actions_body(
    action_id: str,
    value: str,
    *,
    user_id: str = "U0ALICE001",
    username: str = "alice",
    channel: str = "C0ALERTS01",
    message_ts: str = "1700000000.000101",
) -> bytes:
    """The form body Slack POSTs when someone clicks a button (``type: block_actions``)."""
    payload = {
        "type": "block_actions",
        "team": {"id": "T0TEAM0001", "domain": "medic-test"},
        "user": {"id": user_id, "username": username, "name": username, "team_id": "T0TEAM0001"},
        "api_app_id": "A0MEDICAPP",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel},
        "trigger_id": "1.2.3",
        "channel": {"id": channel, "name": "alerts"},
        "message": {"type": "message", "ts": message_ts, "text": "alert"},
        "response_url": "https://hooks.slack.invalid/actions/T0/1/xyz",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "text": {"type": "plain_text", "text": "Click"},
                "value": value,
                "action_ts": "1700000001.000200",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def sign_request(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers of a request Slack signed: ``v0=`` + hex HMAC-SHA256 of ``v0:<ts>:<body>``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    basestring = f"v0:{ts}:".encode() + body
    digest = hmac.new(secret.encode(), basestring, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
