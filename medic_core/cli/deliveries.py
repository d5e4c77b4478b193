"""``medic delivery``: the notification outbox -- list and show deliveries, and re-drive failed
ones with fresh attempts (the running server sends them; this command only re-queues).

The statuses offered to ``list --status`` are ``medic_core.notify.delivery.STATUSES``, written
out so that ``--help`` does not import the store; a unit test keeps them equal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from medic_core.cli.common import Subcommands, actor, emit, with_medic
from medic_core.settings import Settings

#: ``medic_core.notify.delivery.STATUSES`` (a unit test keeps them equal).
STATUSES = ["pending", "sent", "failed", "cancelled"]
_COLUMNS = (
    "id",
    "alert_id",
    "target",
    "kind",
    "status",
    "attempts",
    "next_attempt_at",
    "response_code",
    "last_error",
)


def add_parser(sub: Subcommands) -> None:
    delivery = sub.add_parser(
        "delivery", help="notification deliveries (the outbox): list, show, re-drive failed ones"
    )
    dl = delivery.add_subparsers(dest="delivery_command", required=True, metavar="ACTION")
    dls = dl.add_parser("list", help="list deliveries, newest first")
    dls.add_argument("--status", choices=STATUSES)
    dls.add_argument("--alert", type=int, help="only this alert's deliveries")
    dls.add_argument("--target", help="only this target's deliveries (slug)")
    dls.add_argument("--limit", type=int, default=50, help="at most this many (1-500, default 50)")
    dls.add_argument("--json", action="store_true")
    dsh = dl.add_parser("show", help="one delivery as JSON")
    dsh.add_argument("id", type=int)
    drt = dl.add_parser("retry", help="re-drive one failed delivery with fresh attempts")
    drt.add_argument("id", type=int)
    drt.add_argument("--json", action="store_true")
    dra = dl.add_parser("retry-failed", help="re-drive every failed delivery (of one target)")
    dra.add_argument("--target", help="only this target's failed deliveries (slug)")
    delivery.set_defaults(func=cmd_delivery)


def cmd_delivery(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.delivery_command
        delivery = medic.delivery
        if command == "list":
            page = await delivery.list(
                status=args.status, alert_id=args.alert, target=args.target, limit=args.limit
            )
            emit(args, list(page.items), _COLUMNS)
        elif command == "show":
            print(json.dumps(await delivery.get(args.id), indent=2))
        elif command == "retry":
            emit(args, await delivery.redrive(args.id, actor=actor()), _COLUMNS)
        else:
            count = await delivery.redrive_failed(target=args.target, actor=actor())
            print(f"re-driven {count} failed deliveries (the running server sends them)")

    asyncio.run(with_medic(settings, work))
