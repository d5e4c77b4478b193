"""Property: a secret value set through the API never appears in an API answer, an audit row,
a log record or a bus event -- as written, JSON-escaped or URL-encoded -- on SQLite and
PostgreSQL, whatever the value (hypothesis over secret strings).

Each value is arbitrary text around a core of letters the server never writes itself (no
timestamp, id, key or JSON key has them): without the core, a value such as ``2026`` or
``name`` would be "found" in the answers while nothing leaked. The text around the core brings
quotes, backslashes, ``%``, ``+``, spaces and non-ASCII characters, which change the forms.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import SYSTEM
from medic_core.clock import FakeClock
from medic_core.events import Event
from medic_core.secrets import generate_key
from medic_core.secrets.redact import forms
from medic_core.server.http.app import build_app
from medic_core.store.models import AuditEntry

#: Any character a JSON body can carry to the server (no lone surrogates, no NUL: refused).
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=16
)
CORE = st.text(alphabet="QVWXYZ~^|", min_size=4, max_size=8)
VALUES = st.builds(lambda a, core, b: a + core + b, TEXT, CORE, TEXT)
NAMES = st.from_regex(r"[A-Z_][A-Z0-9_]{0,20}", fullmatch=True)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "".join(traceback.format_exception(*record.exc_info))
        self.lines.append(f"{text} {record.__dict__!r}")


@pytest.fixture
def served(
    db_url: str, tmp_path: Path
) -> Iterator[tuple[asyncio.AbstractEventLoop, Any, str, Medic, list[Event], Records]]:
    """A served app (with MEDIC_SECRET_KEY) on a loop of its own, its events and every log
    record at DEBUG captured."""
    loop = asyncio.new_event_loop()
    medic = Medic(make_settings(db_url, tmp_path, secret_key=generate_key()), clock=FakeClock())
    events: list[Event] = []
    records = Records()
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(records)
    root.setLevel(logging.DEBUG)

    async def record(event: Event) -> None:
        events.append(event)

    async def start() -> tuple[TestClient[Any, Any], str]:
        medic.bus.subscribe("leak-test", record)
        await medic.start(monitor=False)
        token = await medic.ensure_admin_key()
        assert token is not None
        client = TestClient(TestServer(build_app(medic)))
        await client.start_server()
        return client, token

    client, token = loop.run_until_complete(start())
    try:
        yield loop, client, token, medic, events, records
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(medic.stop())
        loop.close()
        root.removeHandler(records)
        root.setLevel(saved_level)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    secrets=st.dictionaries(NAMES, st.tuples(VALUES, VALUES), min_size=1, max_size=3),
)
def test_no_answer_audit_row_log_record_or_event_ever_holds_a_value(
    served: tuple[asyncio.AbstractEventLoop, Any, str, Medic, list[Event], Records],
    secrets: dict[str, tuple[str, str]],
) -> None:
    loop, client, token, medic, events, records = served

    async def scenario() -> list[str]:
        answers: list[str] = []
        for name, (first, second) in secrets.items():
            for value in (first, second):  # created, then replaced
                put = await client.put(
                    f"/api/v1/secrets/{name}", json={"value": value}, headers=auth(token)
                )
                assert put.status in (200, 201), await put.text()
                answers.append(await put.text())
        listed = await client.get("/api/v1/secrets", headers=auth(token))
        answers.append(await listed.text())
        audit = await client.get("/api/v1/audit?resource_type=secret", headers=auth(token))
        answers.append(await audit.text())
        resolved = await medic.secrets.resolve(secrets)
        assert resolved == {name: second for name, (_, second) in secrets.items()}
        await medic.secrets.rotate(actor=SYSTEM)
        for name in secrets:
            deleted = await client.delete(f"/api/v1/secrets/{name}", headers=auth(token))
            assert deleted.status == 204
            answers.append(await deleted.text())
        async with medic.db.sessions() as session:
            for row in (await session.scalars(select(AuditEntry))).all():
                answers.append(repr((row.actor, row.resource_id, row.before, row.after)))
        await medic.bus.drain()
        return answers

    answers = loop.run_until_complete(scenario())
    seen = [*answers, *records.lines, *(f"{e.type} {e.data!r}" for e in events)]
    assert any("secret.changed" in line for line in seen)  # the scan looked at the events
    for name, values in secrets.items():
        for value in values:
            for form in forms(value):
                leaks = [line for line in seen if form in line]
                assert not leaks, (name, value, form, leaks[:3])
