"""Reading back heartbeats and job runs of a service, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from medic_core.clock import isoformat
from medic_core.errors import NotFound, ValidationError
from medic_core.heartbeats.model import STATUSES
from medic_core.store import Database
from medic_core.store.models import Heartbeat, JobRun, Service
from medic_core.store.pagination import Page, check_limit, keyset, rows_page
from medic_core.validation import quote

RUN_STATUSES = ("running", "succeeded", "failed")


def heartbeat_to_dict(hb: Heartbeat, slug: str) -> dict[str, Any]:
    return {
        "id": hb.id,
        "service": slug,
        "status": hb.status,
        "run_id": hb.run_id,
        "exit_code": hb.exit_code,
        "message": hb.message,
        "message_truncated": hb.message_truncated,
        "source": hb.source,
        "received_at": isoformat(hb.received_at),
    }


def run_to_dict(run: JobRun, slug: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "service": slug,
        "run_id": run.run_id,
        "status": run.status,
        "started_at": isoformat(run.started_at),
        "finished_at": isoformat(run.finished_at),
        "duration": run.duration,
        "exit_code": run.exit_code,
        "overrun": run.overrun,
    }


class History:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def _service_id(self, session: Any, slug: str) -> int:
        service_id = await session.scalar(select(Service.id).where(Service.slug == slug))
        if service_id is None:
            raise NotFound(f"no service {quote(slug)}")
        return int(service_id)

    async def heartbeats(
        self,
        slug: str,
        *,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        if status is not None and status not in STATUSES:
            raise ValidationError(f"status must be one of {', '.join(STATUSES)}", field="status")
        async with self._db.sessions() as session:
            query = select(Heartbeat).where(
                Heartbeat.service_id == await self._service_id(session, slug)
            )
            if status is not None:
                query = query.where(Heartbeat.status == status)
            query = keyset(query, Heartbeat.id, cursor, limit, newest_first=True)
            rows = (await session.scalars(query)).all()
        return rows_page(rows, limit, lambda h: heartbeat_to_dict(h, slug), lambda h: h.id)

    async def runs(
        self,
        slug: str,
        *,
        status: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> Page[dict[str, Any]]:
        limit = check_limit(limit)
        if status is not None and status not in RUN_STATUSES:
            raise ValidationError(
                f"status must be one of {', '.join(RUN_STATUSES)}", field="status"
            )
        async with self._db.sessions() as session:
            query = select(JobRun).where(JobRun.service_id == await self._service_id(session, slug))
            if status is not None:
                query = query.where(JobRun.status == status)
            query = keyset(query, JobRun.id, cursor, limit, newest_first=True)
            rows = (await session.scalars(query)).all()
        return rows_page(rows, limit, lambda r: run_to_dict(r, slug), lambda r: r.id)
