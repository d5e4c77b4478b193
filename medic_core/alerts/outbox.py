"""What the alert book needs from alert delivery: queue an alert's notifications in the
transaction of its transition.

The alert book declares this interface and the composition root (``medic_core/app.py``) hands
it the real one, ``notify.router.Router``. So ``alerts`` never imports ``notify``; ``notify``
may import ``alerts`` (the documents it sends). Delivery rows are written in the caller's
transaction, so a committed alert always has its notifications queued, exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from medic_core.events import PendingEvents
from medic_core.store.models import Alert, Service


class Routes(Protocol):
    """Who is paged, as read once in one transaction (the tables are small): used to open a
    batch of alerts in two steps, because an alert's first paging instant is stored with its
    row while its deliveries can only be written once the row exists."""

    def first_page(self, service: Service, alert: Alert, now: datetime) -> datetime | None:
        """When an alert first notified ``now`` is next escalated or reminded (None: never)."""
        ...

    async def queue_opened(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        alerts: Sequence[tuple[Alert, Service]],
        now: datetime,
    ) -> int:
        """Queue the first notifications of alerts already inserted; return how many."""
        ...


class Outbox(Protocol):
    """Alert transitions in, deliveries queued (all inside the caller's transaction)."""

    async def routes(self, session: AsyncSession) -> Routes:
        """Read who is paged, for opening new alerts (``Routes``)."""
        ...

    async def opened_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        alerts: Sequence[tuple[Alert, Service]],
        now: datetime,
    ) -> int:
        """First notification of existing alerts (released from suppression): sets each
        alert's ``page_at`` and queues its deliveries."""
        ...

    async def closed_in(
        self,
        session: AsyncSession,
        pending: PendingEvents,
        kind: Literal["acknowledged", "resolved"],
        alerts: Sequence[Alert],
        now: datetime,
    ) -> int:
        """Tell everyone paged for ``alerts`` that they were acknowledged or resolved; stop
        escalating and reminding."""
        ...
