"""``SlackWebApi``: the few Web API methods Medic calls, with Slack's error conventions mapped once.

Slack reports most errors as HTTP 200 with ``{"ok": false, "error": "..."}``. ``SlackWebApi``
turns every failure into ``DeliveryError`` (``SlackError``): not retryable when only a
configuration change can help (``FATAL_ERRORS``: unknown channel, bad token, rejected blocks...),
retryable otherwise (rate limits with Slack's ``Retry-After``, 5xx, timeouts, unreachable
network).
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from medic_core.plugins.interfaces import DeliveryError

#: Slack errors that retrying cannot fix: the token, the channel or the message must change.
FATAL_ERRORS = frozenset(
    {
        "access_denied",
        "account_inactive",
        "cant_update_message",
        "channel_not_found",
        "deprecated_endpoint",
        "edit_window_closed",
        "ekm_access_denied",
        "enterprise_is_restricted",
        "invalid_arg_name",
        "invalid_arguments",
        "invalid_array_arg",
        "invalid_attachments",
        "invalid_auth",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_charset",
        "invalid_form_data",
        "invalid_json",
        "invalid_post_type",
        "is_archived",
        "json_not_object",
        "message_not_found",
        "method_deprecated",
        "missing_post_type",
        "missing_scope",
        "msg_too_long",
        "no_permission",
        "no_text",
        "not_allowed_token_type",
        "not_authed",
        "not_in_channel",
        "org_login_required",
        "restricted_action",
        "team_access_not_granted",
        "token_expired",
        "token_revoked",
        "too_many_attachments",
        "two_factor_setup_required",
    }
)


class SlackError(DeliveryError):
    """A Slack Web API call failed; ``error`` is Slack's error code (``channel_not_found``...)."""

    def __init__(self, message: str, *, error: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.error = error


class SlackWebApi:
    """The few Web API methods Medic calls, with Slack's error conventions mapped once.

    One ``aiohttp.ClientSession`` is created on first use (inside the running loop) and reused;
    ``close()`` closes it, and a later call would open a new one.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def call(
        self,
        method: str,
        *,
        json_body: dict[str, Any] | None = None,
        form: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST ``method``: a JSON body for write methods, a form for read methods.

        Slack's read methods (``conversations.info``) do not accept JSON bodies.
        """
        if not self._token:
            raise SlackError(
                "Slack is not configured: set MEDIC_SLACK_BOT_TOKEN to the app's bot token "
                "(xoxb-...)",
                error="not_configured",
                retryable=False,
            )
        headers = {"Authorization": f"Bearer {self._token}"}
        data: Any
        if json_body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(json_body, ensure_ascii=False).encode()
        else:
            data = form or {}
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"{self._base_url}/{method}"
        try:
            async with self._session.post(url, data=data, headers=headers) as response:
                return await self._answer(method, response)
        except DeliveryError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            detail = str(exc) or "timed out"
            raise SlackError(
                f"Slack {method}: {type(exc).__name__}: {detail}"[:300], error="unreachable"
            ) from exc

    async def _answer(self, method: str, response: aiohttp.ClientResponse) -> dict[str, Any]:
        status = response.status
        retry_after = _seconds(response.headers.get("Retry-After"))
        if status == 429:
            raise SlackError(
                f"Slack {method}: rate limited (HTTP 429), retry after {retry_after or '?'} s",
                error="ratelimited",
                status_code=429,
                retry_after=retry_after,
            )
        if status >= 500 or status == 408:
            raise SlackError(
                f"Slack {method}: HTTP {status}",
                error=f"http_{status}",
                status_code=status,
                retry_after=retry_after,
            )
        if status != 200:
            # 404 (a wrong MEDIC_SLACK_API_URL), 400, 403...: asking again gets the same answer.
            raise SlackError(
                f"Slack {method}: HTTP {status}; check MEDIC_SLACK_API_URL",
                error=f"http_{status}",
                status_code=status,
                retryable=False,
            )
        try:
            body = await response.json(content_type=None)
        except ValueError as exc:
            raise SlackError(
                f"Slack {method}: the answer is not JSON", error="bad_response", status_code=200
            ) from exc
        if not isinstance(body, dict):
            raise SlackError(
                f"Slack {method}: the answer is not a JSON object",
                error="bad_response",
                status_code=200,
            )
        if body.get("ok") is not True:
            error = str(body.get("error") or "unknown_error")[:100]
            raise SlackError(
                f"Slack {method} failed: {error}{_hint(error)}",
                error=error,
                status_code=200,
                retryable=error not in FATAL_ERRORS,
                retry_after=retry_after,
            )
        return body

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def _hint(error: str) -> str:
    hints = {
        "not_in_channel": " (invite the Medic app to the channel, or grant it chat:write.public)",
        "channel_not_found": " (check the target's channel; private channels need an invitation)",
        "invalid_auth": " (check MEDIC_SLACK_BOT_TOKEN)",
        "not_authed": " (check MEDIC_SLACK_BOT_TOKEN)",
        "token_revoked": " (reinstall the Slack app and update MEDIC_SLACK_BOT_TOKEN)",
        "missing_scope": " (add the chat:write scope to the Slack app and reinstall it)",
    }
    return hints.get(error, "")
