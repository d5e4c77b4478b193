"""Agents as rows, as their ``Hello`` would have stored them (no stream: every execution for
them is queued): for tests of what the server decides from an agent's advertised allowlist."""

from __future__ import annotations

from typing import Any

from medic_core.app import Medic
from medic_core.store.models import Agent

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def allowlist(*names: str) -> dict[str, Any]:
    """An advertised summary listing ``names``, each taking one argument, ``nginx`` or
    ``php-fpm``, and the environment variable ``TOKEN``."""
    return {
        "sha256": "ab" * 32,
        "scripts": [
            {
                "name": name,
                "sha256": SHA,
                "args": [{"one_of": {"values": ["nginx", "php-fpm"]}}],
                "env": ["TOKEN"],
                "timeout_seconds": 120,
            }
            for name in names
        ],
    }


async def add_agent(
    medic: Medic,
    agent_id: str,
    scripts: tuple[str, ...] = ("restart",),
    *,
    status: str = "online",
    labels: dict[str, str] | None = None,
    paused: bool = False,
) -> None:
    now = medic.clock.now()
    async with medic.db.transaction() as session:
        session.add(
            Agent(
                agent_id=agent_id,
                hostname=f"{agent_id}.example",
                version="1.0.0",
                os="linux",
                arch="x86_64",
                labels=labels or {"role": "web"},
                allowlist=allowlist(*scripts),
                capabilities=[],
                paused=paused,
                paused_reason="maintenance" if paused else None,
                status=status,
                offline_since=None if status == "online" else now,
                created_at=now,
                updated_at=now,
            )
        )
