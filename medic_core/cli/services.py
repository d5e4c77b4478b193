"""``medic service``: register, list, show, mute/unmute, pause/resume services.

Goes through ``ServiceRegistry`` exactly as the API does (same validation, same audit entries).
An expectation is given as exactly one of ``--interval``, ``--cron`` or ``--quorum``/``--window``.
The states offered to ``list --state`` are ``medic_core.services.registry.STATES``, written out
so that ``--help`` does not import the store; a unit test keeps them equal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta
from typing import Any

from medic_core.cli.common import Subcommands, actor, all_pages, emit, with_medic
from medic_core.errors import MedicError
from medic_core.settings import Settings
from medic_core.validation import PRIORITIES, instant

#: ``medic_core.services.registry.STATES`` (a unit test keeps them equal).
STATES = ["new", "up", "late", "down", "paused"]
_COLUMNS = ["slug", "state", "priority", "team", "last_heartbeat_at", "next_due", "muted"]


def add_parser(sub: Subcommands) -> None:
    service = sub.add_parser("service", help="services")
    sv = service.add_subparsers(dest="service_command", required=True, metavar="ACTION")
    add = sv.add_parser("add", help="register a service")
    add.add_argument("slug")
    add.add_argument(
        "--interval", type=int, metavar="SECONDS", help="expect a heartbeat this often"
    )
    add.add_argument("--cron", metavar="EXPR", help="expect a heartbeat after each fire time")
    add.add_argument("--timezone", default="UTC", help="IANA zone for --cron (default UTC)")
    add.add_argument("--quorum", type=int, metavar="COUNT", help="at least COUNT per --window")
    add.add_argument("--window", type=int, metavar="SECONDS")
    add.add_argument("--grace", type=int, default=0, metavar="SECONDS")
    add.add_argument("--name")
    add.add_argument("--team")
    add.add_argument("--tag", action="append")
    add.add_argument("--priority", default="p3", choices=PRIORITIES)
    add.add_argument("--runbook-url", dest="runbook_url")
    add.add_argument("--max-duration", dest="max_duration", type=int, metavar="SECONDS")
    add.add_argument("--json", action="store_true")
    ls = sv.add_parser("list", help="list services")
    ls.add_argument("--state", choices=STATES)
    ls.add_argument("--team")
    ls.add_argument("--tag")
    ls.add_argument("--json", action="store_true")
    show = sv.add_parser("show", help="show one service as JSON")
    show.add_argument("slug")
    mute = sv.add_parser("mute", help="mute notifications (alerts are still recorded)")
    mute.add_argument("slug")
    mute.add_argument("--until", help="ISO 8601 instant, e.g. 2026-12-01T08:00:00Z")
    mute.add_argument("--minutes", type=int, help="mute for this many minutes")
    mute.add_argument("--reason")
    mute.add_argument("--json", action="store_true")
    for name, text in (
        ("unmute", "unmute"),
        ("pause", "stop monitoring"),
        ("resume", "resume monitoring with a fresh deadline"),
    ):
        p = sv.add_parser(name, help=text)
        p.add_argument("slug")
        p.add_argument("--json", action="store_true")
    service.set_defaults(func=cmd_service)


def _expectation(args: argparse.Namespace) -> dict[str, Any]:
    chosen = [x for x in (args.interval, args.cron, args.quorum) if x is not None]
    if len(chosen) != 1:
        raise MedicError("choose exactly one of --interval SECONDS, --cron EXPR, --quorum COUNT")
    if args.interval is not None:
        return {"kind": "interval", "period": args.interval}
    if args.cron is not None:
        return {"kind": "cron", "expression": args.cron, "timezone": args.timezone}
    if args.window is None:
        raise MedicError("--quorum needs --window SECONDS")
    return {"kind": "quorum", "min_count": args.quorum, "window": args.window}


def cmd_service(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.service_command
        registry = medic.services
        if command == "add":
            data: dict[str, Any] = {
                "slug": args.slug,
                "expectation": _expectation(args),
                "grace": args.grace,
                "priority": args.priority,
            }
            for key in ("name", "team", "runbook_url", "max_duration"):
                if getattr(args, key) is not None:
                    data[key] = getattr(args, key)
            if args.tag:
                data["tags"] = args.tag
            emit(args, await registry.create(data, actor=actor()), _COLUMNS)
        elif command == "list":
            items = await all_pages(registry.list, state=args.state, team=args.team, tag=args.tag)
            emit(args, items, _COLUMNS)
        elif command == "show":
            print(json.dumps(await registry.get(args.slug), indent=2))
        elif command == "mute":
            until = None
            if args.until:
                until = instant(args.until, "until")
            elif args.minutes:
                until = medic.clock.now() + timedelta(minutes=args.minutes)
            emit(
                args,
                await registry.mute(args.slug, until=until, reason=args.reason, actor=actor()),
                _COLUMNS,
            )
        else:
            change = getattr(registry, command)
            emit(args, await change(args.slug, actor=actor()), _COLUMNS)

    asyncio.run(with_medic(settings, work))
