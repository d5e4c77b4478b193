"""Inbound playbook webhooks: a signed request from outside starts a run of one playbook.

The route needs no API key (a CI system or another monitor calls it); the request is
authenticated by an HMAC-SHA256 with the playbook's own secret instead:

    X-Medic-Timestamp: <unix seconds>
    X-Medic-Signature: sha256=<hex of HMAC-SHA256(secret, "<timestamp>." + body)>

Checked in this order, each refusal counted in ``medic_playbook_webhooks_refused{reason}``:
the body is at most ``max_bytes`` (413, ``too_large``); both headers are present and well
formed (401, ``unsigned``); the timestamp is within ``window`` seconds of the server's clock
(401, ``stale``); the playbook exists, declares a ``webhook`` trigger and has a secret (401,
``not_enabled``: the same answer as a bad signature, so an anonymous caller cannot learn which
playbooks exist); the signature matches, compared in constant time (401, ``bad_signature``);
the signature was not accepted before (401, ``replayed``: accepted signatures are stored with a
unique constraint, so two replicas cannot both accept one, and kept for twice the window: an
older request fails the timestamp check anyway). Only then is the body read as JSON
(``{"variables": {...}}``, checked against the playbook's variables: 422) and a run started.

The secret is made by ``rotate_secret`` (an admin's API call) from 32 random bytes, shown once,
and stored encrypted with ``MEDIC_SECRET_KEY`` (``secrets.box``); rotating replaces it at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from medic_core.audit import Actor, record_audit
from medic_core.clock import Clock, isoformat
from medic_core.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized, ValidationError
from medic_core.observability.metrics import Metrics
from medic_core.playbooks.executions import Executions
from medic_core.playbooks.registry import Playbooks
from medic_core.secrets.box import Box, SecretsNotConfigured, UnreadableSecret
from medic_core.store import Database
from medic_core.store.models import PlaybookWebhookDelivery
from medic_core.validation import quote

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Medic-Timestamp"
SIGNATURE_HEADER = "X-Medic-Signature"
_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
#: One answer for every authentication failure: which check failed is the metric's, not the
#: caller's, to know.
_REFUSED = (
    "the request is not signed with this playbook's webhook secret, or its timestamp is outside "
    "the window, or it was already accepted (docs/playbooks.md#inbound-webhook)"
)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Medic-Signature`` value of ``body`` sent at ``timestamp`` (what a sender
    computes; the tests and docs use it)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class PlaybookWebhooks:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        box: Box | None,
        playbooks: Playbooks,
        executions: Executions,
        *,
        window: float,
        max_bytes: int,
    ) -> None:
        if not 10.0 <= window <= 3600.0:
            raise ValueError("MEDIC_PLAYBOOK_WEBHOOK_WINDOW must be between 10 and 3600 seconds")
        if not 256 <= max_bytes <= 1_048_576:
            raise ValueError("MEDIC_PLAYBOOK_WEBHOOK_MAX_BYTES must be between 256 and 1048576")
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._box = box
        self._playbooks = playbooks
        self._executions = executions
        self.window = timedelta(seconds=window)
        self.max_bytes = max_bytes

    # -- the secret ------------------------------------------------------------------------------

    async def rotate_secret(self, slug: str, *, actor: Actor) -> dict[str, Any]:
        """Make a new secret for the playbook's webhook (the old one stops working at once):
        the only time the secret is shown."""
        if self._box is None:
            raise SecretsNotConfigured()
        value = secrets.token_urlsafe(32)
        now = self._clock.now()
        async with self._db.transaction() as session:
            playbook = await self._playbooks.find(session, slug, lock=True)
            had = playbook.webhook_secret is not None
            playbook.webhook_secret = self._box.encrypt(value)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="playbook.webhook_secret",
                resource_type="playbook",
                resource_id=playbook.id,
                after={"slug": slug, "rotated": had},  # never the value
            )
        return {"playbook": slug, "secret": value, "rotated_at": isoformat(now)}

    # -- receiving -------------------------------------------------------------------------------

    def refuse(self, reason: str) -> Unauthorized | PayloadTooLarge:
        self._metrics.playbook_webhooks_refused.labels(reason).inc()
        if reason == "too_large":
            return PayloadTooLarge(
                f"the webhook body is larger than {self.max_bytes} bytes "
                "(MEDIC_PLAYBOOK_WEBHOOK_MAX_BYTES)"
            )
        return Unauthorized(_REFUSED)

    async def receive(
        self, slug: str, timestamp: str | None, signature: str | None, body: bytes
    ) -> dict[str, Any]:
        """Check a signed request and start the run it asks for (the run's document)."""
        if len(body) > self.max_bytes:
            raise self.refuse("too_large")
        signed = _SIGNATURE.fullmatch(signature or "")
        if timestamp is None or not _TIMESTAMP.fullmatch(timestamp) or signed is None:
            raise self.refuse("unsigned")
        now = self._clock.now()
        if abs(now.timestamp() - int(timestamp)) > self.window.total_seconds():
            raise self.refuse("stale")
        secret = await self._secret(slug)
        if secret is None:
            raise self.refuse("not_enabled")
        expected = sign(secret, timestamp, body)
        if not hmac.compare_digest(expected.encode(), ("sha256=" + signed.group(1)).encode()):
            raise self.refuse("bad_signature")
        await self._accept_once(slug, signed.group(1))
        variables = _variables(body)
        run = await self._executions.start(
            slug, variables, actor=Actor(f"webhook:{slug}"), trigger="webhook"
        )
        self._metrics.playbook_triggers.labels("webhook", "started").inc()
        log.info("playbook %s started by its inbound webhook (run %s)", slug, run["id"])
        return run

    async def _secret(self, slug: str) -> str | None:
        """The playbook's webhook secret, when it exists, declares a webhook trigger and has
        one (None otherwise)."""
        async with self._db.sessions() as session:
            try:
                playbook = await self._playbooks.find(session, slug)
            except NotFound:
                return None
            version = await self._playbooks.version(session, playbook, playbook.current_version)
        triggers = version.definition.get("triggers") or []
        if not any(t.get("kind") == "webhook" for t in triggers):
            return None
        if playbook.webhook_secret is None or self._box is None:
            return None
        try:
            return self._box.decrypt(f"webhook of {slug}", playbook.webhook_secret)
        except UnreadableSecret:
            log.error(
                "the webhook secret of playbook %s cannot be decrypted with MEDIC_SECRET_KEY: "
                "rotate it (POST /api/v1/playbooks/%s/webhook-secret)",
                slug,
                slug,
            )
            return None

    async def _accept_once(self, slug: str, signature: str) -> None:
        now = self._clock.now()
        try:
            async with self._db.transaction() as session:
                playbook = await self._playbooks.find(session, slug)
                await session.execute(
                    delete(PlaybookWebhookDelivery).where(
                        PlaybookWebhookDelivery.playbook_id == playbook.id,
                        PlaybookWebhookDelivery.received_at < now - 2 * self.window,
                    )
                )
                session.add(
                    PlaybookWebhookDelivery(
                        playbook_id=playbook.id, signature=signature, received_at=now
                    )
                )
        except IntegrityError:
            raise self.refuse("replayed") from None


def _variables(body: bytes) -> dict[str, Any]:
    """The run's variables from the body: empty, or ``{"variables": {...}}``."""
    if not body.strip():
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the webhook body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest('the webhook body is a JSON object: {"variables": {...}}')
    unknown = sorted(set(data) - {"variables"})
    if unknown:
        raise ValidationError(
            f"{quote(unknown[0])} is not a field of a webhook body (only variables)",
            field=unknown[0],
        )
    variables = data.get("variables", {})
    if not isinstance(variables, dict):
        raise ValidationError("variables must be an object", field="variables")
    return variables
