"""``medic schedule``: weekly hours in a time zone, which targets' periods refer to.

Hours are given as ``--hours 'mon-fri 09:00-17:30'`` (repeatable; day ranges may wrap, e.g.
``fri-mon``) or as the API's ``--weekly`` JSON; either way the ``ScheduleRegistry`` validates
them exactly as the API does. Tables show the ranges as one line; ``--json`` gives the API form.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

from medic_core.cli.common import (
    Subcommands,
    json_option,
    slug_command,
    with_medic,
)
from medic_core.errors import MedicError
from medic_core.settings import Settings

_COLUMNS = ["slug", "name", "timezone", "hours"]


def add_parser(sub: Subcommands) -> None:
    schedule = sub.add_parser("schedule", help="schedules: weekly hours in a time zone")
    sc = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    for action, text in (("add", "create a schedule"), ("update", "change a schedule")):
        p = sc.add_parser(action, help=text)
        p.add_argument("slug")
        p.add_argument("--timezone", required=action == "add", help="IANA zone, e.g. Europe/Berlin")
        p.add_argument(
            "--hours",
            action="append",
            metavar="'DAYS HH:MM-HH:MM'",
            help="a range such as 'mon-fri 09:00-17:30' or 'fri 22:00-06:00' (past midnight); "
            "repeat for several; replaces all ranges",
        )
        p.add_argument("--weekly", metavar="JSON", help="the ranges as the API's weekly JSON")
        p.add_argument("--name")
        p.add_argument("--json", action="store_true")
    sc.add_parser("list", help="list schedules").add_argument("--json", action="store_true")
    sc.add_parser("show", help="show one schedule as JSON").add_argument("slug")
    sc.add_parser("remove", help="delete a schedule no target uses").add_argument("slug")
    schedule.set_defaults(func=cmd_schedule)


def _days(text: str) -> list[str]:
    """``mon-fri,sun`` -> ``["mon", "tue", "wed", "thu", "fri", "sun"]`` (ranges may wrap)."""
    # Imported here: the schedule package loads cron support, which `--help` does not need.
    from medic_core.notify.weekly import DAYS

    days: list[str] = []
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise MedicError(
                f"--hours: {part!r} is not a day or a day range: use {', '.join(DAYS)}, "
                "e.g. mon-fri or sat,sun"
            )
        start = DAYS.index(first)
        span = (DAYS.index(last) - start) % 7 if last else 0
        days += [
            DAYS[(start + i) % 7] for i in range(span + 1) if DAYS[(start + i) % 7] not in days
        ]
    return days


def _hours(values: Sequence[str]) -> list[dict[str, Any]]:
    """``--hours "mon-fri 09:00-17:30"`` options as the API's ``weekly`` ranges."""
    weekly = []
    for value in values:
        days, _, times = value.strip().partition(" ")
        start, _, end = times.strip().partition("-")
        if not days or not start or not end:
            raise MedicError(
                f"--hours {value!r} must look like 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 09:00-17:30'"
            )
        weekly.append({"days": _days(days), "start": start.strip(), "end": end.strip()})
    return weekly


def _row(schedule: dict[str, Any]) -> dict[str, Any]:
    """A schedule as a table row: its ranges on one line (``mon,tue 09:00-17:00; ...``)."""
    hours = "; ".join(f"{','.join(r['days'])} {r['start']}-{r['end']}" for r in schedule["weekly"])
    return {**schedule, "hours": hours}


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.schedule_command
        data: dict[str, Any] = {}
        if command in ("add", "update"):
            if args.hours and args.weekly is not None:
                raise MedicError("give the hours with --hours or --weekly, not both")
            if args.hours:
                data["weekly"] = _hours(args.hours)
            elif args.weekly is not None:
                data["weekly"] = json_option(args.weekly, "--weekly")
            for key in ("name", "timezone"):
                if getattr(args, key) is not None:
                    data[key] = getattr(args, key)
            if command == "add" and "weekly" not in data:
                raise MedicError("give the hours: --hours 'mon-fri 09:00-17:30' (repeatable)")
        await slug_command(
            args, command, medic.schedules, "schedule", data, columns=_COLUMNS, view=_row
        )

    asyncio.run(with_medic(settings, work))
