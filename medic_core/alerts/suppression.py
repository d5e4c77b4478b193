"""Whether a new alert is notified now or held back (mute, maintenance), and until when."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.maintenance.windows import active_windows_for
from medic_core.store.models import MaintenanceWindow, Service


async def any_window_active(session: AsyncSession, now: datetime) -> bool:
    """Whether any maintenance window spans ``now`` (one indexed probe, to skip the per-service
    lookup in the common case of no maintenance at all)."""
    found = await session.scalar(
        select(MaintenanceWindow.id)
        .where(MaintenanceWindow.starts_at <= now, MaintenanceWindow.ends_at > now)
        .limit(1)
    )
    return found is not None


def mute_active(service: Service, now: datetime) -> bool:
    return service.muted and (service.muted_until is None or service.muted_until > now)


async def suppression_for(
    session: AsyncSession, service: Service, now: datetime
) -> tuple[str | None, datetime | None]:
    """Return ``(reason, notify_at)``; ``reason`` is None when nothing suppresses the alert.

    ``notify_at`` is when every suppression has ended (None for an open-ended mute): if the
    alert is still unresolved then, it is notified at that moment.
    """
    reasons: list[str] = []
    ends: list[datetime | None] = []
    if mute_active(service, now):
        reasons.append("muted" + (f": {service.mute_reason}" if service.mute_reason else ""))
        ends.append(service.muted_until)
    for name, end in await active_windows_for(session, service, now):
        reasons.append(f"maintenance: {name}")
        ends.append(end)
    if not reasons:
        return None, None
    if any(end is None for end in ends):
        return "; ".join(reasons)[:200], None
    return "; ".join(reasons)[:200], max(end for end in ends if end is not None)
