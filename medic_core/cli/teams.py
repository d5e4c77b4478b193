"""``medic team``: a team's settings -- for now, which escalation policy its alerts follow
(``set-escalation POLICY``, or ``--none`` for the first page only)."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from medic_core.cli.common import Subcommands, actor, emit, with_medic
from medic_core.errors import MedicError
from medic_core.settings import Settings


def add_parser(sub: Subcommands) -> None:
    team = sub.add_parser("team", help="teams")
    tm = team.add_subparsers(dest="team_command", required=True, metavar="ACTION")
    setp = tm.add_parser("set-escalation", help="choose (or with --none, remove) a team's policy")
    setp.add_argument("team")
    setp.add_argument("policy", nargs="?", help="escalation policy slug")
    setp.add_argument("--none", action="store_true", help="no policy: only the first page")
    setp.add_argument("--json", action="store_true")
    team.set_defaults(func=cmd_team)


def cmd_team(args: argparse.Namespace, settings: Settings) -> None:
    if (args.policy is None) == (not args.none):
        raise MedicError("give an escalation policy slug, or --none to remove the team's policy")

    async def work(medic: Any) -> None:
        team = await medic.teams.update(
            args.team, {"escalation_policy": args.policy}, actor=actor()
        )
        emit(args, team, ["slug", "name", "escalation_policy"])

    asyncio.run(with_medic(settings, work))
