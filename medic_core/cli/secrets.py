"""``medic secret``: set, list, delete and rotate playbook secrets; keygen makes a key.

A value is never taken from the command line: argv is kept in shell history and shown to every
local user by ``ps``. ``set`` reads it from stdin (without echo when stdin is a terminal) or from
``--from-file``; one trailing newline is dropped, so ``echo value | medic secret set NAME`` and
a file saved by an editor store ``value``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from medic_core.cli.common import Subcommands, actor, all_pages, emit, with_medic
from medic_core.errors import MedicError
from medic_core.settings import Settings

_COLUMNS = ["name", "created_at", "updated_at", "updated_by"]
_NO_ARGV = (
    "The value is read from stdin (typed without echo on a terminal) or from --from-file, "
    "never from the command line: arguments stay in shell history and every local user sees "
    "them in `ps`. One trailing newline is dropped."
)


def add_parser(sub: Subcommands) -> None:
    secret = sub.add_parser(
        "secret",
        help="secrets for playbook templates (needs MEDIC_SECRET_KEY)",
        description="Secrets that playbook templates use as secrets.NAME, stored encrypted "
        "with MEDIC_SECRET_KEY (docs/secrets.md).",
    )
    sc = secret.add_subparsers(dest="action", required=True, metavar="ACTION")
    setp = sc.add_parser(
        "set",
        help="create or replace a secret",
        description=f"Create or replace a secret. {_NO_ARGV}",
    )
    setp.add_argument("name", help="A-Z, a-z, 0-9 and _, not starting with a digit (1-64)")
    setp.add_argument("--from-file", metavar="PATH", help="read the value from this file")
    lst = sc.add_parser("list", help="list secret names (never values)")
    lst.add_argument("--json", action="store_true")
    delete = sc.add_parser("delete", help="delete a secret")
    delete.add_argument("name")
    sc.add_parser(
        "rotate",
        help="re-encrypt every secret with the first key of MEDIC_SECRET_KEY",
        description="Re-encrypt every secret, and every playbook's inbound webhook secret, with "
        "the first key of MEDIC_SECRET_KEY (the other keys must still open them); afterwards "
        "the old keys can be removed.",
    )
    sc.add_parser(
        "keygen",
        help="print a new key for MEDIC_SECRET_KEY",
        description="Print a new random Fernet key. Needs no database. To rotate, put it first "
        "in MEDIC_SECRET_KEY (new,old), run `medic secret rotate`, then drop the old key.",
    )
    secret.set_defaults(func=cmd_secret)


def _read_value(path: str | None) -> str:
    if path is not None:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise MedicError(f"cannot read the secret from {path}: {exc}") from None
    elif sys.stdin.isatty():
        value = getpass.getpass("secret value: ")
    else:
        try:
            value = sys.stdin.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise MedicError(f"cannot read the secret from stdin: {exc}") from None
    return value.removesuffix("\n").removesuffix("\r")


def cmd_secret(args: argparse.Namespace, settings: Settings) -> None:
    if args.action == "keygen":
        from medic_core.secrets.box import generate_key

        print(generate_key())
        return
    value = None
    if args.action == "set":
        from medic_core.secrets.box import Box, SecretsNotConfigured

        # Before the value is typed or piped in: without a key it could not be kept.
        if Box.from_setting(settings.secret_key) is None:
            raise SecretsNotConfigured()
        value = _read_value(args.from_file)

    async def work(medic: Any) -> None:
        if args.action == "set":
            assert value is not None
            summary, created = await medic.secrets.set(args.name, value, actor=actor())
            print(f"{'created' if created else 'replaced'} secret {summary['name']}")
        elif args.action == "list":
            emit(args, await all_pages(medic.secrets.list), _COLUMNS)
        elif args.action == "delete":
            await medic.secrets.delete(args.name, actor=actor())
            print(f"deleted secret {args.name}")
        else:
            count = await medic.secrets.rotate(
                actor=actor(), on_batch=lambda done: print(f"rotated {done} so far", flush=True)
            )
            print(
                f"rotated {count} secret(s), playbook webhook secrets included, to the first "
                "key of MEDIC_SECRET_KEY"
            )

    asyncio.run(with_medic(settings, work))
