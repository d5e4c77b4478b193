"""The delivery service: sends the outbox (``deliveries``) through notifier plugins.

One concept in one module (~690 lines): claiming, sending, recording and listing deliveries share
the lease and ordering rules below, so they stay together. The last section, sending *now* outside
the outbox (a target test, a target check, a playbook's message: ``_send_now``), shares only the
send slot and the metrics; it is where this module splits (into ``notify/direct.py``, taking the
send path as a collaborator) when it grows again.

One pass: escalate/remind alerts whose ``page_at`` passed (``Router.page_due_in``), claim due
deliveries, send them concurrently, record each outcome. Claiming moves a delivery's
``next_attempt_at`` one lease ahead and commits before anything is sent, so another replica (or
this one after a crash) takes it over only once the lease has run out: a delivery is sent at
least once, and exactly once unless a process dies between the receiver's answer and the
commit of the outcome. Receivers that need exactly-once use the stable ``dedup_key`` /
``delivery_id``.

Order per (alert, target) is kept: a delivery is not claimed while an earlier one for the same
alert and target is still pending, so "resolved" never overtakes "opened".

Failures: a ``DeliveryError(retryable=False)`` fails the delivery at once; other errors retry
with exponential back-off and full jitter (or the receiver's Retry-After, if longer) until
``delivery_max_attempts``. Failed deliveries stay listed and can be re-driven. A per-target
circuit breaker (in memory, per process) stops hammering a target that keeps failing: while open,
its deliveries are deferred to the end of the cool-down without spending an attempt.

Concurrency: one process has at most ``delivery_concurrency`` notifications in flight (outbox
sends; an operator's target test is sent beside them). A pass claims no more than that, so every
claimed delivery is sent at once: one that waited for a free slot behind slow receivers could
outlive its lease and be sent a second time by another replica. The limit is per process, not
per target: N replicas may have N times as many requests in flight to one receiver.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, exists, select, update
from sqlalchemy.orm import aliased

from medic_core.alerts.documents import alert_to_dict, service_brief
from medic_core.audit import Actor, record_audit
from medic_core.backoff import backoff
from medic_core.clock import Clock, isoformat
from medic_core.errors import Conflict, NotFound, ValidationError
from medic_core.events import Event
from medic_core.notify.router import Router
from medic_core.observability.metrics import Metrics
from medic_core.passes import Pass, PassLoop
from medic_core.plugins.interfaces import DeliveryError, HealthResult, Notification, Notifier
from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.models import Alert, Delivery, NotificationTarget, Service
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.store.types import instant_from_db
from medic_core.validation import quote

log = logging.getLogger(__name__)
_DELIVERIES = cast(Table, Delivery.__table__)
STATUSES = ("pending", "sent", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class DeliveryPass:
    paged: int
    claimed: int
    sent: int
    failed: int
    retrying: int
    deferred: int
    next_due: datetime | None


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


@dataclass(frozen=True, slots=True)
class _Job:
    delivery_id: int
    attempt: int
    notifier: str
    target_id: int
    notification: Notification


@dataclass(frozen=True, slots=True)
class _Outcome:
    job: _Job
    error: BaseException | None
    result: dict[str, Any] | None
    seconds: float


def delivery_to_dict(delivery: Delivery, target_slug: str | None) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "alert_id": delivery.alert_id,
        "target": target_slug,
        "kind": delivery.kind,
        "level": delivery.level,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": isoformat(delivery.next_attempt_at),
        "last_error": delivery.last_error,
        "response_code": delivery.response_code,
        "created_at": isoformat(delivery.created_at),
        "updated_at": isoformat(delivery.updated_at),
        "sent_at": isoformat(delivery.sent_at),
    }


class DeliveryService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        metrics: Metrics,
        notifiers: Mapping[str, Notifier],
        router: Router,
        settings: Settings,
        *,
        batch_size: int = 100,
        max_sleep: float = 10.0,
    ) -> None:
        self._db = db
        self._clock = clock
        self._metrics = metrics
        self._notifiers = notifiers
        self._router = router
        self._settings = settings
        concurrency = settings.delivery_concurrency
        if concurrency < 1:
            raise ValueError(f"MEDIC_DELIVERY_CONCURRENCY must be at least 1, got {concurrency}")
        # A pass claims at most what may be in flight (see the module's doc); the semaphore
        # holds the bound should two passes ever overlap.
        self._batch = batch_size
        self._claims = min(batch_size, concurrency)
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = settings.notify_timeout
        # A claimed delivery belongs to its claimer for this long; after it, anyone may retry.
        # A send is cut at notify_timeout, so twice that (plus the outcome's commit) is ample;
        # it is also how long a crash can hold a delivery back.
        self._lease = timedelta(seconds=2 * settings.notify_timeout + 5.0)
        self._breakers: dict[int, _Breaker] = {}
        self._loop = PassLoop("deliveries", self._pass, clock, max_sleep=max_sleep)
        self._public_url = settings.resolved_public_url
        #: The latest connection test of each enabled target (``refresh_target_health``), shown
        #: in /health/ready: tested in the background, so probes never wait on Slack or SMTP.
        self.target_health: dict[str, HealthResult] = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        """Bus subscriber: deliveries were queued (committed), so look at once."""
        if event.type == "deliveries.queued":
            self._loop.wake()

    def notice(self) -> None:
        self._loop.wake()

    async def start(self) -> None:
        await self._loop.start()

    async def stop(self, timeout: float = 10.0) -> None:
        await self._loop.stop(timeout)

    async def _pass(self) -> Pass:
        result = await self.run_once()
        # Something claimed or paged: maybe more is due; the next pass is cheap when not.
        return Pass(bool(result.claimed or result.paged), result.next_due)

    # -- one pass ------------------------------------------------------------------------------

    async def run_once(self) -> DeliveryPass:
        now = self._clock.now()
        async with self._db.transaction() as session:
            paged = await self._router.page_due_in(session, now, self._batch)
        jobs, deferred = await self._claim(now)
        outcomes = await asyncio.gather(*(self._send_in_slot(job) for job in jobs))
        sent, failed, retrying = await self._record(outcomes)
        return DeliveryPass(
            paged, len(jobs), sent, failed, retrying, deferred, await self._next_due()
        )

    async def _claim(self, now: datetime) -> tuple[list[_Job], int]:
        earlier = aliased(Delivery)
        blocked = exists().where(
            and_(
                earlier.alert_id == Delivery.alert_id,
                earlier.target_id == Delivery.target_id,
                earlier.id < Delivery.id,
                earlier.status == "pending",
            )
        )
        query = (
            select(Delivery, NotificationTarget, Alert, Service)
            .join(NotificationTarget, NotificationTarget.id == Delivery.target_id)
            .join(Alert, Alert.id == Delivery.alert_id)
            .join(Service, Service.id == Alert.service_id)
            .where(
                Delivery.status == "pending",
                Delivery.next_attempt_at <= now,
                ~blocked,
            )
            .order_by(Delivery.next_attempt_at, Delivery.id)
            .limit(self._claims)
        )
        if self._db.is_postgres:
            query = query.with_for_update(skip_locked=True, of=Delivery)
        jobs: list[_Job] = []
        deferred = 0
        mono = time.monotonic()
        async with self._db.transaction() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return [], 0
            states = await self._states(session, [(d.alert_id, d.target_id) for d, *_ in rows])
            for delivery, target, alert, service in rows:
                breaker = self._breakers.get(target.id)
                if breaker is not None and breaker.open_until > mono:
                    # Held, not attempted: the attempt count is for the target's answers.
                    delivery.next_attempt_at = now + timedelta(seconds=breaker.open_until - mono)
                    delivery.updated_at = now
                    deferred += 1
                    continue
                delivery.attempts += 1
                delivery.next_attempt_at = now + self._lease
                delivery.updated_at = now
                alert_doc = alert_to_dict(alert, service)
                links = {"alert": f"{self._public_url}/alerts/{alert.id}"}
                if service.runbook_url:
                    links["runbook"] = service.runbook_url
                jobs.append(
                    _Job(
                        delivery.id,
                        delivery.attempts,
                        target.notifier,
                        target.id,
                        Notification(
                            kind=delivery.kind,  # type: ignore[arg-type]
                            alert=alert_doc,
                            service=service_brief(service),
                            config=dict(target.config or {}),
                            target=target.slug,
                            dedup_key=f"medic-alert-{alert.id}",
                            state=states.get((alert.id, target.id), {}),
                            links=links,
                            delivery_id=delivery.id,
                        ),
                    )
                )
        return jobs, deferred

    async def _states(
        self, session: Any, pairs: list[tuple[int, int]]
    ) -> dict[tuple[int, int], dict[str, Any]]:
        """What earlier sent deliveries of each (alert, target) returned, merged (later wins)."""
        alert_ids = {a for a, _ in pairs}
        rows = await session.execute(
            select(Delivery.alert_id, Delivery.target_id, Delivery.result)
            .where(
                Delivery.alert_id.in_(alert_ids),
                Delivery.status == "sent",
                Delivery.result.is_not(None),
            )
            .order_by(Delivery.id)
        )
        wanted = set(pairs)
        states: dict[tuple[int, int], dict[str, Any]] = {}
        for alert_id, target_id, result in rows:
            if (alert_id, target_id) in wanted and isinstance(result, dict):
                states.setdefault((alert_id, target_id), {}).update(result)
        return states

    async def _send_in_slot(self, job: _Job) -> _Outcome:
        async with self._slots:
            self._metrics.deliveries_in_flight.inc()
            try:
                return await self._send(job)
            finally:
                self._metrics.deliveries_in_flight.dec()

    async def _send(self, job: _Job) -> _Outcome:
        notifier = self._notifiers.get(job.notifier)
        started = time.monotonic()
        if notifier is None:
            error = DeliveryError(
                f"notifier {quote(job.notifier)} is not loaded (plugin removed or disabled?)",
                retryable=False,
            )
            return _Outcome(job, error, None, 0.0)
        try:
            async with asyncio.timeout(self._timeout):
                result = await notifier.send(job.notification)
        except TimeoutError:
            error = DeliveryError(f"no answer within {self._timeout:g}s (MEDIC_NOTIFY_TIMEOUT)")
            return _Outcome(job, error, None, time.monotonic() - started)
        except Exception as exc:
            return _Outcome(job, exc, None, time.monotonic() - started)
        if result is not None and not isinstance(result, dict):
            result = None
        return _Outcome(job, None, result, time.monotonic() - started)

    async def _record(self, outcomes: list[_Outcome]) -> tuple[int, int, int]:
        if not outcomes:
            return 0, 0, 0
        now = self._clock.now()
        sent = failed = retrying = 0
        async with self._db.transaction() as session:
            ids = [o.job.delivery_id for o in outcomes]
            found = await session.scalars(select(Delivery).where(Delivery.id.in_(ids)))
            deliveries = {d.id: d for d in found.all()}
            for outcome in outcomes:
                delivery = deliveries.get(outcome.job.delivery_id)
                if delivery is None or delivery.status != "pending":
                    continue  # deleted or cancelled meanwhile
                delivery.updated_at = now
                notifier = outcome.job.notifier
                if outcome.error is None:
                    self._breaker_ok(outcome.job.target_id)
                    delivery.status = "sent"
                    delivery.sent_at = now
                    delivery.next_attempt_at = None
                    delivery.last_error = None
                    delivery.result = outcome.result
                    sent += 1
                    self._metrics.notifications.labels(notifier, "sent").inc()
                    continue
                error = outcome.error
                retryable = not isinstance(error, DeliveryError) or error.retryable
                code = error.status_code if isinstance(error, DeliveryError) else None
                message = str(error) or type(error).__name__
                if not isinstance(error, DeliveryError):
                    message = f"{type(error).__name__}: {message}"
                delivery.last_error = message[:1000]
                delivery.response_code = code
                self._breaker_failed(outcome.job.target_id, outcome.job.notification.target)
                if not retryable or delivery.attempts >= self._settings.delivery_max_attempts:
                    delivery.status = "failed"
                    delivery.next_attempt_at = None
                    failed += 1
                    self._metrics.notifications.labels(notifier, "failed").inc()
                    log.warning(
                        "delivery %d to %s failed for good after %d attempt(s): %s",
                        delivery.id,
                        outcome.job.notification.target,
                        delivery.attempts,
                        message,
                    )
                    continue
                delay = self._backoff(delivery.attempts)
                if isinstance(error, DeliveryError) and error.retry_after:
                    delay = max(delay, min(error.retry_after, self._settings.delivery_backoff_max))
                delivery.next_attempt_at = now + timedelta(seconds=delay)
                retrying += 1
                self._metrics.notifications.labels(notifier, "retry").inc()
                log.info(
                    "delivery %d to %s failed (attempt %d), retrying in %.0fs: %s",
                    delivery.id,
                    outcome.job.notification.target,
                    delivery.attempts,
                    delay,
                    message,
                )
        return sent, failed, retrying

    def _backoff(self, attempts: int) -> float:
        """Exponential with full jitter: uniform in [base, min(max, base * 2**(attempts-1))]."""
        return backoff(
            attempts,
            base=self._settings.delivery_backoff,
            cap=self._settings.delivery_backoff_max,
            jitter=random.uniform,
        )

    def _breaker_ok(self, target_id: int) -> None:
        self._breakers.pop(target_id, None)

    def _breaker_failed(self, target_id: int, target: str) -> None:
        breaker = self._breakers.setdefault(target_id, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self._settings.breaker_failures:
            # Open (again): hold the target's deliveries for the cool-down; the first one after
            # it is the probe -- a failure re-opens at once, a success closes.
            breaker.open_until = time.monotonic() + self._settings.breaker_cooldown
            breaker.failures = self._settings.breaker_failures - 1
            self._metrics.breaker_opened.labels(target).inc()
            log.warning(
                "circuit breaker opened for target %s: deliveries held for %.0fs",
                target,
                self._settings.breaker_cooldown,
            )

    async def _next_due(self) -> datetime | None:
        query = select(
            select(Delivery.next_attempt_at)
            .where(Delivery.status == "pending")
            .order_by(Delivery.next_attempt_at)
            .limit(1)
            .scalar_subquery(),
            select(Alert.page_at)
            .where(Alert.page_at.is_not(None))
            .order_by(Alert.page_at)
            .limit(1)
            .scalar_subquery(),
        )
        async with self._db.sessions() as session:
            values = (await session.execute(query)).one()
        found = [instant_from_db(v) for v in values if v is not None]
        return min(found) if found else None

    # -- operator actions ------------------------------------------------------------------------

    async def list(
        self,
        *,
        status: str | None = None,
        alert_id: int | None = None,
        target: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        size = check_limit(limit)
        query = select(Delivery, NotificationTarget.slug).join(
            NotificationTarget, NotificationTarget.id == Delivery.target_id
        )
        if status is not None:
            if status not in STATUSES:
                raise ValidationError(
                    f"status must be one of {', '.join(STATUSES)}", field="status"
                )
            query = query.where(Delivery.status == status)
        if alert_id is not None:
            query = query.where(Delivery.alert_id == alert_id)
        if target is not None:
            query = query.where(NotificationTarget.slug == target)
        query = keyset(query, Delivery.id, cursor, size, newest_first=True)
        async with self._db.sessions() as session:
            rows = (await session.execute(query)).all()
        return rows_page(
            rows, size, lambda row: delivery_to_dict(row[0], row[1]), lambda row: row[0].id
        )

    async def get(self, delivery_id: int) -> dict[str, Any]:
        async with self._db.sessions() as session:
            row = (
                await session.execute(
                    select(Delivery, NotificationTarget.slug)
                    .join(NotificationTarget, NotificationTarget.id == Delivery.target_id)
                    .where(Delivery.id == delivery_id)
                )
            ).first()
        if row is None:
            raise NotFound(f"no delivery with id {delivery_id}")
        return delivery_to_dict(row[0], row[1])

    async def redrive(self, delivery_id: int, *, actor: Actor) -> dict[str, Any]:
        """Send a failed delivery again, with a fresh set of attempts."""
        now = self._clock.now()
        async with self._db.transaction() as session:
            delivery = await session.get(Delivery, delivery_id)
            if delivery is None:
                raise NotFound(f"no delivery with id {delivery_id}")
            if delivery.status != "failed":
                raise Conflict(
                    f"delivery {delivery_id} is {delivery.status}: only failed deliveries "
                    "can be re-driven"
                )
            slug = await session.scalar(
                select(NotificationTarget.slug).where(NotificationTarget.id == delivery.target_id)
            )
            before = delivery_to_dict(delivery, slug)
            delivery.status = "pending"
            delivery.attempts = 0
            delivery.next_attempt_at = now
            delivery.updated_at = now
            self._breakers.pop(delivery.target_id, None)
            after = delivery_to_dict(delivery, slug)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="delivery.redrive",
                resource_type="delivery",
                resource_id=delivery.id,
                before=before,
                after=after,
            )
        self._loop.wake()
        return after

    async def redrive_failed(self, *, target: str | None, actor: Actor) -> int:
        """Re-drive every failed delivery (of one target); return how many."""
        now = self._clock.now()
        async with self._db.transaction() as session:
            query = update(_DELIVERIES).where(_DELIVERIES.c.status == "failed")
            if target is not None:
                target_id = await session.scalar(
                    select(NotificationTarget.id).where(NotificationTarget.slug == target)
                )
                if target_id is None:
                    raise NotFound(f"no target {quote(target)}")
                query = query.where(_DELIVERIES.c.target_id == target_id)
                self._breakers.pop(target_id, None)
            else:
                self._breakers.clear()
            result = await session.execute(
                query.values(status="pending", attempts=0, next_attempt_at=now, updated_at=now)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            record_audit(
                session,
                actor=actor,
                at=now,
                action="delivery.redrive_failed",
                resource_type="delivery",
                resource_id=target or "*",
                after={"target": target, "count": count},
            )
        self._loop.wake()
        return count

    async def _target(self, slug: str) -> NotificationTarget:
        async with self._db.sessions() as session:
            target = await session.scalar(
                select(NotificationTarget).where(NotificationTarget.slug == slug)
            )
        if target is None:
            raise NotFound(f"no target {quote(slug)}")
        return target

    async def test_target(self, slug: str) -> dict[str, Any]:
        """Send a clearly labelled test notification to a target now (not through the outbox)."""
        target = await self._target(slug)
        now = self._clock.now()
        service, alert = _standalone(
            target,
            now,
            "medic-test",
            "Medic test notification",
            "test",
            f"Test notification for target {target.slug}: no action needed",
            {"test": True},
        )
        return await self._send_now(
            target,
            Notification(
                kind="test",
                alert=alert,
                service=service,
                config=dict(target.config or {}),
                target=target.slug,
                dedup_key=f"medic-test-{target.slug}-{int(now.timestamp())}",
                links={"alert": f"{self._public_url}/"},
            ),
        )

    async def send_message(
        self, slug: str, message: str, *, playbook: str, execution_id: int, step: str
    ) -> dict[str, Any]:
        """Send a playbook's ``notify`` step message to a target now, through its notifier
        (kind ``playbook``; not through the outbox: the step run is the durable record, and
        the step's ``retry`` its retries). Raises ``NotFound`` for an unknown target and
        ``Conflict`` for a disabled one; returns what ``test_target`` returns."""
        target = await self._target(slug)
        if not target.enabled:
            raise Conflict(f"target {quote(slug)} is disabled")
        now = self._clock.now()
        service, alert = _standalone(
            target,
            now,
            f"playbook-{playbook}"[:100],
            f"Playbook {playbook}",
            "playbook",
            message,
            {"playbook": playbook, "execution_id": execution_id, "step": step},
        )
        return await self._send_now(
            target,
            Notification(
                kind="playbook",
                alert=alert,
                service=service,
                config=dict(target.config or {}),
                target=target.slug,
                # Stable across the step's attempts: a receiver that dedups (PagerDuty) sees
                # a retried message once.
                dedup_key=f"medic-playbook-{execution_id}-{step}"[:255],
                links={"alert": f"{self._public_url}/"},
                message=message,
            ),
        )

    async def _send_now(
        self, target: NotificationTarget, notification: Notification
    ) -> dict[str, Any]:
        """Send one notification through ``target``'s notifier now, outside the outbox, and
        say how it went (a target test, a playbook's message)."""
        outcome = await self._send(_Job(0, 1, target.notifier, target.id, notification))
        error = outcome.error
        return {
            "target": target.slug,
            "notifier": target.notifier,
            "ok": error is None,
            "retryable": error is not None
            and (not isinstance(error, DeliveryError) or error.retryable),
            "error": None if error is None else (str(error) or type(error).__name__),
            "response_code": error.status_code if isinstance(error, DeliveryError) else None,
            "duration_ms": round(outcome.seconds * 1000, 1),
        }

    async def refresh_target_health(self) -> None:
        """Test every enabled target's configuration (concurrently) and keep the results."""
        async with self._db.sessions() as session:
            slugs = (
                await session.scalars(
                    select(NotificationTarget.slug)
                    .where(NotificationTarget.enabled.is_(True))
                    .order_by(NotificationTarget.slug)
                )
            ).all()
        results = await asyncio.gather(*(self.check_target(slug) for slug in slugs))
        self.target_health = dict(zip(slugs, results, strict=True))

    async def check_target(self, slug: str) -> HealthResult:
        """Test a target's configuration without notifying anyone (``medic doctor``)."""
        target = await self._target(slug)
        notifier = self._notifiers.get(target.notifier)
        if notifier is None:
            return HealthResult("down", f"notifier {quote(target.notifier)} is not loaded")
        check = getattr(notifier, "check_target", None)
        if check is None:
            return HealthResult("ok", f"{target.notifier} has no connection test")
        try:
            async with asyncio.timeout(self._timeout):
                result = await check(dict(target.config or {}))
        except Exception as exc:
            return HealthResult("down", f"{type(exc).__name__}: {exc}"[:300])
        return result if isinstance(result, HealthResult) else HealthResult("ok")


def _standalone(
    target: NotificationTarget,
    now: datetime,
    service_slug: str,
    service_name: str,
    cause: str,
    summary: str,
    details: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The service and alert documents of a notification that is about no alert (a target
    test, a playbook message): shaped like the real ones so every notifier renders them."""
    service = {
        "id": 0,
        "slug": service_slug,
        "name": service_name,
        "priority": "p5",
        "team_id": target.team_id,
        "tags": [],
        "runbook_url": None,
    }
    alert = {
        "id": 0,
        "service": service,
        "cause": cause,
        "state": "open",
        "priority": "p5",
        "summary": summary,
        "details": details,
        "opened_at": isoformat(now),
        "acknowledged_at": None,
        "acknowledged_by": None,
        "resolved_at": None,
        "resolved_by": None,
        "resolution": None,
        "suppressed": False,
        "suppressed_reason": None,
        "notify_at": None,
        "notified_at": isoformat(now),
    }
    return service, alert
