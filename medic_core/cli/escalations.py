"""``medic escalation``: escalation policies -- whom to page, and when, while an alert stays
unacknowledged, and how often to remind.

Levels are given as ``--level SECONDS:TARGET[,TARGET]`` (repeatable, in increasing order) or as
the API's ``--levels`` JSON; the ``EscalationRegistry`` validates them as the API does. A team
picks its policy with ``medic team set-escalation`` (``cli/teams.py``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from medic_core.cli.common import (
    Subcommands,
    json_option,
    slug_command,
    with_medic,
)
from medic_core.errors import MedicError
from medic_core.settings import Settings

_COLUMNS = ["slug", "name", "levels", "repeat_every", "max_reminders"]


def add_parser(sub: Subcommands) -> None:
    escalation = sub.add_parser("escalation", help="escalation policies")
    es = escalation.add_subparsers(dest="escalation_command", required=True, metavar="ACTION")
    for action, text in (("add", "create an escalation policy"), ("update", "change one")):
        p = es.add_parser(action, help=text)
        p.add_argument("slug")
        p.add_argument(
            "--level",
            action="append",
            metavar="SECONDS:TARGET[,TARGET]",
            help="page these targets if the alert is still unacknowledged SECONDS after it "
            "was first notified; repeat in increasing order; replaces all levels",
        )
        p.add_argument("--levels", metavar="JSON", help="the levels as the API's JSON list")
        p.add_argument(
            "--repeat-every",
            dest="repeat_every",
            type=int,
            metavar="SECONDS",
            help="remind everyone paged so far this often (60 to 86400)",
        )
        if action == "update":
            p.add_argument("--no-repeat", action="store_true", help="stop sending reminders")
        p.add_argument("--max-reminders", dest="max_reminders", type=int, metavar="N")
        p.add_argument("--name")
        p.add_argument("--json", action="store_true")
    es.add_parser("list", help="list escalation policies").add_argument(
        "--json", action="store_true"
    )
    es.add_parser("show", help="show one policy as JSON").add_argument("slug")
    es.add_parser("remove", help="delete a policy no team uses").add_argument("slug")
    escalation.set_defaults(func=cmd_escalation)


def _level(value: str) -> dict[str, Any]:
    after, _, targets = value.partition(":")
    try:
        seconds = int(after)
    except ValueError:
        seconds = -1
    names = [t.strip() for t in targets.split(",") if t.strip()]
    if seconds < 0 or not names:
        raise MedicError(
            f"--level {value!r} must look like SECONDS:TARGET[,TARGET...], e.g. 900:sre-pager"
        )
    return {"after": seconds, "targets": names}


def _row(policy: dict[str, Any]) -> dict[str, Any]:
    levels = "; ".join(f"{lv['after']}s: {','.join(lv['targets'])}" for lv in policy["levels"])
    return {**policy, "levels": levels}


def cmd_escalation(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.escalation_command
        data: dict[str, Any] = {}
        if command in ("add", "update"):
            if args.level and args.levels is not None:
                raise MedicError("give the levels with --level or --levels, not both")
            if args.level:
                data["levels"] = [_level(value) for value in args.level]
            elif args.levels is not None:
                data["levels"] = json_option(args.levels, "--levels")
            if args.name is not None:
                data["name"] = args.name
            if args.max_reminders is not None:
                data["max_reminders"] = args.max_reminders
            if args.repeat_every is not None:
                data["repeat_every"] = args.repeat_every
            if getattr(args, "no_repeat", False):
                data["repeat_every"] = None
        await slug_command(
            args, command, medic.escalations, "escalation policy", data, columns=_COLUMNS, view=_row
        )

    asyncio.run(with_medic(settings, work))
