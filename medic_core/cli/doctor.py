"""``medic doctor``: is this installation working? Exits 1 when a check is down.

Runs the readiness checks (as ``/health/ready``), compares the schema with the latest
migration, says whether playbook runs are being advanced (none long overdue, none waiting for a
human after an unknown outcome), then runs each enabled target's own configuration check --
concurrently, each bounded by ``_TARGET_CHECK_TIMEOUT`` -- without notifying anyone. It never
migrates (unlike the other administrative commands) and never creates anything: it only looks.
Every detail is passed through ``Settings.scrub`` because a library's error may quote a URL or
a token.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from medic_core.cli.common import Subcommands, all_pages, emit
from medic_core.errors import MedicError
from medic_core.settings import Settings

_TARGET_CHECK_TIMEOUT = 30.0


def add_parser(sub: Subcommands) -> None:
    doctor = sub.add_parser(
        "doctor",
        help="check the database, the schema and every enabled notification target",
        description="Runs the readiness checks (as /health/ready), compares the schema with the "
        "latest migration, says whether playbook runs are being advanced, then checks each "
        "enabled target's configuration without notifying anyone. Exits 1 when a check is down.",
    )
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)


async def checks(settings: Settings) -> list[dict[str, str]]:
    """Readiness checks, the schema revision, then every enabled target's own check."""
    from medic_core.app import Medic
    from medic_core.store.migrate import current_revision, head_revision

    medic = Medic(settings)
    try:
        rows = [
            {"check": name, "status": result.status, "detail": result.detail}
            for name, result in (await medic.readiness()).items()
        ]
        if any(r["check"] == "database" and r["status"] == "down" for r in rows):
            return rows  # nothing below can be read
        try:
            current = await current_revision(medic.db)
        except Exception as exc:
            detail = f"cannot read the schema revision: {type(exc).__name__}: {exc}"
            return [*rows, {"check": "schema", "status": "down", "detail": detail[:300]}]
        head = head_revision()
        if current != head:
            detail = f"at {current or 'an empty database'}, latest {head}: run `medic db upgrade`"
            return [*rows, {"check": "schema", "status": "degraded", "detail": detail}]
        rows.append({"check": "schema", "status": "ok", "detail": f"at {head}"})
        # Due runs are claimed within a pass (MEDIC_MONITOR_MAX_SLEEP) and a dead replica's
        # runs once its lease lapses: later than both, twice over, no engine is taking them.
        late = 2 * (settings.playbook_lease + settings.monitor_max_sleep)
        status, detail = await medic.runs.health(overdue_after=late)
        rows.append({"check": "playbooks", "status": status, "detail": detail})
        return rows + await _target_checks(medic)
    finally:
        await medic.stop()


async def _target_checks(medic: Any) -> list[dict[str, str]]:
    slugs = [t["slug"] for t in await all_pages(medic.targets.list, enabled=True)]
    delivery = getattr(medic, "delivery", None)
    if not slugs:
        return []
    if delivery is None:
        detail = f"{len(slugs)} enabled target(s) not checked: this Medic has no delivery service"
        return [{"check": "targets", "status": "degraded", "detail": detail}]

    async def check(target: str) -> dict[str, str]:
        try:
            async with asyncio.timeout(_TARGET_CHECK_TIMEOUT):
                result = await delivery.check_target(target)
        except MedicError as exc:
            return {"check": f"target:{target}", "status": "down", "detail": str(exc)}
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return {"check": f"target:{target}", "status": "down", "detail": detail}
        return {"check": f"target:{target}", "status": result.status, "detail": result.detail}

    return list(await asyncio.gather(*(check(target) for target in slugs)))


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> None:
    rows = asyncio.run(checks(settings))
    # A check's detail quotes what its library said, which may include a URL or a token.
    rows = [{**row, "detail": settings.scrub(row["detail"])} for row in rows]
    emit(args, rows, ["check", "status", "detail"])
    if any(row["status"] == "down" for row in rows):
        raise SystemExit(1)
