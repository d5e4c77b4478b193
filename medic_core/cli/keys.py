"""``medic apikey``: create (the token is printed once), list and revoke API keys.

The scopes offered are ``medic_core.auth.keys.SCOPES``, written out here so that ``--help``
does not import the store; a unit test keeps the two lists equal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import timedelta
from typing import Any

from medic_core.cli.common import Subcommands, actor, emit, with_medic
from medic_core.settings import Settings

#: ``medic_core.auth.keys.SCOPES`` (a unit test keeps them equal).
SCOPES = ["read", "write", "admin", "heartbeat", "agent"]
_COLUMNS = ["id", "key_id", "name", "scopes", "expires_at", "last_used_at", "revoked_at"]


def add_parser(sub: Subcommands) -> None:
    apikey = sub.add_parser("apikey", help="API keys")
    ak = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = ak.add_parser("create", help="create a key and print its token once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="repeat for several scopes (default read)",
    )
    create.add_argument("--expires-in-days", type=int)
    create.add_argument("--json", action="store_true")
    lst = ak.add_parser("list", help="list keys")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    lst.add_argument("--json", action="store_true")
    revoke = ak.add_parser("revoke", help="revoke a key by id or key id")
    revoke.add_argument("key")
    apikey.set_defaults(func=cmd_apikey)


def cmd_apikey(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.auth.keys import key_to_dict

    async def work(medic: Any) -> None:
        if args.apikey_command == "create":
            expires = None
            if args.expires_in_days:
                expires = medic.clock.now() + timedelta(days=args.expires_in_days)
            key, token = await medic.keys.create(
                name=args.name, scopes=args.scope or ["read"], expires_at=expires, actor=actor()
            )
            if args.json:
                print(json.dumps({**key_to_dict(key), "token": token}, indent=2))
            else:
                print(f"created key {key.key_id} ({', '.join(key.scopes)})")
                print(f"token (shown once): {token}")
        elif args.apikey_command == "list":
            keys = [key_to_dict(k) for k in await medic.keys.list(include_revoked=args.all)]
            emit(args, keys, _COLUMNS)
        else:
            key = await medic.keys.revoke(args.key, actor=actor())
            print(f"revoked key {key.key_id}")

    asyncio.run(with_medic(settings, work))
