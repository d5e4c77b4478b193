"""``medic playbook webhook-secret SLUG``, in process on SQLite and PostgreSQL: without
MEDIC_SECRET_KEY it says how to get one; with it, it prints a new secret once -- the one the
webhook checks signatures with (stored encrypted) -- and a second call replaces it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml
from cryptography.fernet import Fernet
from sqlalchemy import select

# The in-process ``cli`` fixtures of test_cli.py (``cli_db``: on SQLite and PostgreSQL).
from test_cli import Cli, cli, cli_db  # noqa: F401

from medic_core.secrets import Box
from medic_core.settings import Settings
from medic_core.store import Database
from medic_core.store.models import Playbook

PLAYBOOK = {
    "slug": "heal",
    "triggers": [{"kind": "webhook"}],
    "steps": [{"name": "pause", "type": "wait", "params": {"seconds": 1}}],
}


async def stored_secret() -> str | None:
    db = Database(Settings.load().resolved_database_url)
    try:
        async with db.sessions() as session:
            return await session.scalar(
                select(Playbook.webhook_secret).where(Playbook.slug == "heal")
            )
    finally:
        await db.close()


def test_webhook_secret_is_printed_once_stored_encrypted_and_replaced_on_demand(
    cli_db: Cli,  # noqa: F811
    tmp_path: Path,
) -> None:
    cli = cli_db  # noqa: F811
    assert cli("db", "upgrade")[0] == 0
    path = tmp_path / "heal.yaml"
    path.write_text(yaml.safe_dump(PLAYBOOK))
    assert cli("playbook", "apply", "-f", str(path))[0] == 0

    code, _, err = cli("playbook", "webhook-secret", "heal")
    assert code == 2 and "medic secret keygen" in err

    key = Fernet.generate_key().decode()
    cli.monkeypatch.setenv("MEDIC_SECRET_KEY", key)
    code, first, _ = cli("playbook", "webhook-secret", "heal")
    assert code == 0
    first = first.strip()
    assert len(first) >= 40
    token = asyncio.run(stored_secret())
    assert token is not None and first not in token
    assert Box([key]).decrypt("webhook of heal", token) == first

    code, second, _ = cli("playbook", "webhook-secret", "heal")
    assert code == 0 and second.strip() != first
    token = asyncio.run(stored_secret())
    assert token is not None
    assert Box([key]).decrypt("webhook of heal", token) == second.strip()

    code, _, err = cli("playbook", "webhook-secret", "nope")
    assert code != 0 and "nope" in err
