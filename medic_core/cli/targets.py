"""``medic target`` (alias ``targets``): notification targets -- add, update, list, show,
remove, and ``test`` (send a test notification) or ``check`` (check the configuration without
notifying anyone), both exiting 1 when the target is not working.

A target belongs to a team, a service, or nobody (the fallback). Its notifier configuration
comes from ``--config`` JSON or ``--config-file`` (``-``: stdin, so a secret need not appear in
the process list); secrets are never printed back (``TargetRegistry`` masks them), and on
update a masked value keeps the stored secret.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from medic_core.cli.common import (
    Subcommands,
    actor,
    all_pages,
    emit,
    emit_view,
    json_option,
    with_medic,
)
from medic_core.errors import MedicError
from medic_core.settings import Settings
from medic_core.validation import PRIORITIES

#: ``medic_core.notify.targets.PERIODS`` (a unit test keeps them equal).
PERIODS = ["always", "working_hours", "off_hours"]
_COLUMNS = ["slug", "notifier", "owner", "min_priority", "period", "schedule", "enabled"]
_TEST_COLUMNS = ["target", "notifier", "ok", "response_code", "duration_ms", "error"]


def add_parser(sub: Subcommands) -> None:
    target = sub.add_parser("target", aliases=["targets"], help="notification targets")
    tg = target.add_subparsers(dest="target_command", required=True, metavar="ACTION")
    for action, text in (("add", "create a target"), ("update", "change a target")):
        p = tg.add_parser(
            action,
            help=text,
            description="Secrets in the configuration are never printed back (********); "
            "on update, a ******** value keeps the stored secret.",
        )
        p.add_argument("slug")
        p.add_argument(
            "--notifier", required=action == "add", help="a loaded notifier: see `plugins list`"
        )
        p.add_argument("--config", metavar="JSON", help="the notifier's configuration")
        p.add_argument(
            "--config-file",
            dest="config_file",
            metavar="PATH",
            help="read it from a file (-: stdin)",
        )
        p.add_argument("--team", help="owner team (its services page this target)")
        p.add_argument("--service", help="owner service (replaces its team's targets)")
        if action == "update":
            p.add_argument("--fallback", action="store_true", help="no owner: the fallback")
        p.add_argument("--min-priority", dest="min_priority", choices=PRIORITIES)
        p.add_argument("--period", choices=PERIODS)
        p.add_argument("--schedule", help="schedule slug (working_hours/off_hours)")
        if action == "update":
            p.add_argument("--no-schedule", action="store_true", help="clear the schedule")
        p.add_argument("--name")
        switch = p.add_mutually_exclusive_group()
        switch.add_argument("--enable", dest="enabled", action="store_const", const=True)
        switch.add_argument("--disable", dest="enabled", action="store_const", const=False)
        p.add_argument("--json", action="store_true")
    ls = tg.add_parser("list", help="list targets")
    ls.add_argument("--team")
    ls.add_argument("--service")
    ls.add_argument("--notifier")
    switch = ls.add_mutually_exclusive_group()
    switch.add_argument("--enabled", dest="enabled", action="store_const", const=True)
    switch.add_argument("--disabled", dest="enabled", action="store_const", const=False)
    ls.add_argument("--json", action="store_true")
    tg.add_parser("show", help="show one target as JSON (secrets masked)").add_argument("slug")
    tg.add_parser("remove", help="delete a target no escalation policy names").add_argument("slug")
    for action, text in (
        ("test", "send a test notification now; exits 1 if it failed"),
        ("check", "check the configuration without notifying anyone; exits 1 if down"),
    ):
        p = tg.add_parser(action, help=text)
        p.add_argument("slug")
        p.add_argument("--json", action="store_true")
    target.set_defaults(func=cmd_target)


def _config(args: argparse.Namespace) -> Any:
    if args.config is not None and args.config_file is not None:
        raise MedicError("give the configuration with --config or --config-file, not both")
    if args.config is not None:
        return json_option(args.config, "--config")
    if args.config_file is None:
        return None
    try:
        if args.config_file == "-":
            raw = sys.stdin.read()
        else:
            with open(args.config_file, encoding="utf-8") as handle:
                raw = handle.read()
    except OSError as exc:
        raise MedicError(f"cannot read --config-file {args.config_file}: {exc.strerror}") from None
    return json_option(raw, f"--config-file {args.config_file}")


def _row(target: dict[str, Any]) -> dict[str, Any]:
    if target["service"]:
        owner = f"service:{target['service']}"
    elif target["team"]:
        owner = f"team:{target['team']}"
    else:
        owner = "(fallback)"
    return {**target, "owner": owner}


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields ``add``/``update`` set: only those given on the command line."""
    data: dict[str, Any] = {}
    config = _config(args)
    if config is not None:
        data["config"] = config
    if args.team is not None and args.service is not None:
        raise MedicError("a target belongs to a team or to a service: give --team or --service")
    if args.team is not None:
        data["team"] = args.team
    if args.service is not None:
        data["service"] = args.service
    if getattr(args, "fallback", False):
        if "team" in data or "service" in data:
            raise MedicError("--fallback means no team and no service: drop --team/--service")
        data["team"] = data["service"] = None
    for key in ("name", "notifier", "min_priority", "period", "schedule"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    if getattr(args, "no_schedule", False):
        data["schedule"] = None
    if args.enabled is not None:
        data["enabled"] = args.enabled
    return data


def cmd_target(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.target_command
        targets = medic.targets
        if command == "add":
            data = {"slug": args.slug, **_fields(args)}
            emit_view(args, await targets.create(data, actor=actor()), _COLUMNS, _row)
        elif command == "update":
            result = await targets.update(args.slug, _fields(args), actor=actor())
            emit_view(args, result, _COLUMNS, _row)
        elif command == "list":
            items = await all_pages(
                targets.list,
                team=args.team,
                service=args.service,
                notifier=args.notifier,
                enabled=args.enabled,
            )
            emit_view(args, items, _COLUMNS, _row)
        elif command == "show":
            print(json.dumps(await targets.get(args.slug), indent=2))
        elif command == "remove":
            await targets.delete(args.slug, actor=actor())
            print(f"removed target {args.slug}")
        elif command == "test":
            result = await medic.delivery.test_target(args.slug)
            emit(args, result, _TEST_COLUMNS)
            if not result.get("ok"):
                raise SystemExit(1)
        else:
            health = await medic.delivery.check_target(args.slug)
            checked = {"target": args.slug, "status": health.status, "detail": health.detail}
            emit(args, checked, ["target", "status", "detail"])
            if health.status == "down":
                raise SystemExit(1)

    asyncio.run(with_medic(settings, work))
