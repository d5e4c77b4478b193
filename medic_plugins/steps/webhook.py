"""``webhook``: call an HTTP endpoint through Medic's outbound guard.

Every request goes through ``medic_core.net.guard`` (the session the webhook notifier uses too):
private, loopback and link-local destinations are refused unless the operator allowed them
(``MEDIC_OUTBOUND_ALLOW_NETWORKS``), redirects are not followed. The step succeeds when the
answer's status is one of ``success_codes`` (default: any 2xx); its output is the status and
the start of the answer's body. A transport error (refused, unreachable, timed out) fails it.

Not idempotent by default: after a crash during the request nobody knows whether the receiver
acted, so the run stops for a human unless the step says ``idempotent: true``.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from medic_core.net.guard import BlockedDestination, OutboundPolicy
from medic_core.plugins.interfaces import Done, Failed, Outcome, StepRun
from medic_plugins.steps._outbound import Outbound
from medic_plugins.steps._shapes import TEXT, seconds

#: Most bytes of an answer's body read and kept in the step's output.
BODY_BYTES = 16_384
DEFAULT_TIMEOUT = 10


class WebhookStep:
    name = "webhook"
    description = (
        "Call an HTTP endpoint; succeeds when it answers one of success_codes. URL, headers "
        "and body may be templates."
    )
    idempotent_by_default = False
    params_schema: dict[str, Any] = {
        "type": "object",
        "required": ["url"],
        "properties": {
            "url": {
                "type": "string",
                "pattern": "^https?://",
                "maxLength": 2000,
                "description": "an http(s) URL; private addresses only where "
                "MEDIC_OUTBOUND_ALLOW_NETWORKS allows them",
            },
            "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE"], "default": "POST"},
            "headers": {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}$"},
                "additionalProperties": TEXT,
                "maxProperties": 50,
            },
            "body": {"description": "JSON sent as the body (strings in it may be templates)"},
            "success_codes": {
                "type": "array",
                "items": {"type": "integer", "minimum": 100, "maximum": 599},
                "minItems": 1,
                "maxItems": 50,
                "uniqueItems": True,
                "description": "default: any 2xx",
            },
            "timeout": seconds(1, 300, "seconds one request may take (default 10)"),
        },
        "additionalProperties": False,
    }

    def __init__(
        self, policy: OutboundPolicy | None = None, *, resolver: AbstractResolver | None = None
    ) -> None:
        self._outbound = Outbound(policy, resolver=resolver)
        self.policy = self._outbound.policy

    async def advance(self, params: dict[str, Any], run: StepRun) -> Outcome:
        method = params.get("method", "POST")
        headers = {str(k): str(v) for k, v in (params.get("headers") or {}).items()}
        if any(c in value for value in headers.values() for c in "\r\n\0"):
            return Failed("a header value contains a line break")
        headers.setdefault("X-Medic-Execution", str(run.execution_id))
        timeout = aiohttp.ClientTimeout(total=float(params.get("timeout", DEFAULT_TIMEOUT)))
        codes = params.get("success_codes")
        try:
            url = self.policy.check_url(str(params["url"]))
            async with self._outbound.session().request(
                method,
                url,
                json=params.get("body"),
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
            ) as response:
                status = response.status
                raw = await response.content.read(BODY_BYTES)
        except BlockedDestination as exc:
            return Failed(f"destination refused: {exc.reason}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return Failed(f"{method} {params['url'][:200]} failed: {type(exc).__name__}: {exc}")
        output = {"status": status, "body": raw.decode("utf-8", "replace")}
        ok = status in codes if codes else 200 <= status < 300
        if ok:
            return Done(output)
        return Failed(f"the endpoint answered {status}", output)

    async def close(self) -> None:
        await self._outbound.close()
