"""``medic db``: the database schema (``upgrade`` to the latest migration, ``current``).

Works on a bare ``Database`` rather than a whole ``Medic``: upgrading must not depend on the
schema it is about to create.
"""

from __future__ import annotations

import argparse
import asyncio

from medic_core.cli.common import Subcommands
from medic_core.settings import Settings


def add_parser(sub: Subcommands) -> None:
    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply migrations up to the latest")
    db_sub.add_parser("current", help="show the applied and latest revisions")
    db.set_defaults(func=cmd_db)


def cmd_db(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.store import Database
    from medic_core.store.migrate import current_revision, head_revision, upgrade

    async def run() -> None:
        db = Database(settings.resolved_database_url)
        try:
            if args.db_command == "upgrade":
                print(f"upgrading {db.redacted_url()} ...")
                await upgrade(db)
                print(f"database at revision {await current_revision(db)} (head {head_revision()})")
            else:
                print(f"current: {await current_revision(db) or 'empty'}; head: {head_revision()}")
        finally:
            await db.close()

    asyncio.run(run())
