"""``medic config``: the effective settings (secrets masked), or with ``--markdown`` the
settings reference that ``docs/configuration.md`` embeds."""

from __future__ import annotations

import argparse
import json

from medic_core.cli.common import Subcommands
from medic_core.settings import Settings, settings_markdown


def add_parser(sub: Subcommands) -> None:
    config = sub.add_parser("config", help="show the effective settings")
    config.add_argument("--markdown", action="store_true", help="print the settings reference")
    config.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace, settings: Settings) -> None:
    if args.markdown:
        print(settings_markdown(), end="")
    else:
        print(json.dumps(settings.masked(), indent=2))
