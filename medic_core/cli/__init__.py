"""The ``medic`` command line: the parser, the dispatch and the exit codes.

One module per command group, each holding its flags (``add_parser``) next to the code that
reads them (``cmd_<name>``):

- ``serve``: run the server;
- ``db``: the schema; ``apikey`` (``keys.py``); ``service`` (``services.py``);
- alert delivery (docs/alert-delivery.md): ``schedule`` (``schedules.py``), ``escalation``
  (``escalations.py``), ``target`` (``targets.py``), ``delivery`` (``deliveries.py``),
  ``team`` (``teams.py``);
- ``playbook`` (``playbooks.py``): validate (offline), apply, list, show playbook definitions;
- ``secret`` (``secrets.py``): the secrets playbook templates use; ``keygen`` needs no database;
- ``ping``: an HTTP client for cron lines and scripts;
- ``plugins``, ``config``, ``doctor``: what this installation loads, how it is set, whether it
  works.

What they share (the audit actor, table/JSON output, a ``Medic`` to work on, reading every page)
is in ``common.py``. Administrative commands work on the database named by the settings, through
the same domain code the API uses. Nothing imports SQLAlchemy at module level, so ``--help``,
``ping`` and ``config`` stay quick and need no database.

Exit codes: 0 done; 1 a check or test reported a failure (``doctor``, ``target test|check``,
``plugins list``); 2 a usage or input error (one ``medic: ...`` line on stderr, no traceback);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from medic_core import __version__
from medic_core.cli import (
    config,
    db,
    deliveries,
    doctor,
    escalations,
    keys,
    ping,
    playbooks,
    plugins,
    schedules,
    secrets,
    serve,
    services,
    targets,
    teams,
)
from medic_core.errors import MedicError
from medic_core.settings import Settings

#: In the order ``medic --help`` lists them.
_COMMANDS = (
    serve,
    db,
    keys,
    services,
    ping,
    plugins,
    config,
    schedules,
    escalations,
    targets,
    deliveries,
    teams,
    playbooks,
    secrets,
    doctor,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medic",
        description="Medic: heartbeat monitoring and auto-remediation. Settings come from MEDIC_* "
        "environment variables (see docs/configuration.md or `medic config --markdown`).",
    )
    parser.add_argument("--version", action="version", version=f"medic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {}
    # `serve --host/--port` override the settings (the only command with them).
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    try:
        settings = Settings.load(**overrides)
        args.func(args, settings)
    except (MedicError, ValueError) as exc:
        print(f"medic: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
