"""The ``medic`` command line.

Administrative commands (``db``, ``apikey``, ``service``, ``schedule``, ``escalation``,
``target``, ``team``, ``plugins``, ``doctor``) work on the database named by the settings,
through the same domain code the API uses; ``ping`` is an HTTP client for cron lines and scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from medic_core import __version__
from medic_core.errors import MedicError
from medic_core.settings import Settings, settings_markdown
from medic_core.validation import instant

if TYPE_CHECKING:
    from medic_core.audit import Actor


def _actor() -> Actor:
    # Imported here: it pulls in SQLAlchemy, which `--help`, `ping` and `config` do not need.
    from medic_core.audit import Actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return Actor(f"cli:{user}")


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _emit(args: argparse.Namespace, data: Any, columns: Sequence[str] | None = None) -> None:
    if getattr(args, "json", False) or columns is None:
        print(json.dumps(data, indent=2, default=str))
    else:
        _print_table(data if isinstance(data, list) else [data], columns)


async def _with_medic(settings: Settings, work: Callable[[Any], Awaitable[None]]) -> None:
    from medic_core.app import Medic
    from medic_core.store.migrate import upgrade

    medic = Medic(settings)
    try:
        if settings.auto_migrate:
            await upgrade(medic.db)
        await work(medic)
    finally:
        await medic.stop()  # not started: closes the notifiers' connections and the database


# -- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.observability.logs import configure_logging
    from medic_core.observability.tracing import configure_tracing
    from medic_core.server.serve import serve

    configure_logging(
        settings.log_level, json=settings.log_format == "json", secrets=settings.secret_values()
    )
    configure_tracing(settings.otlp_endpoint)
    try:
        import uvloop
    except ImportError:  # not on every platform; the standard loop works, only slower
        asyncio.run(serve(settings))
    else:
        uvloop.run(serve(settings))


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


def cmd_apikey(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.auth.keys import key_to_dict

    async def work(medic: Any) -> None:
        if args.apikey_command == "create":
            expires = None
            if args.expires_in_days:
                expires = medic.clock.now() + timedelta(days=args.expires_in_days)
            key, token = await medic.keys.create(
                name=args.name, scopes=args.scope or ["read"], expires_at=expires, actor=_actor()
            )
            if args.json:
                print(json.dumps({**key_to_dict(key), "token": token}, indent=2))
            else:
                print(f"created key {key.key_id} ({', '.join(key.scopes)})")
                print(f"token (shown once): {token}")
        elif args.apikey_command == "list":
            keys = [key_to_dict(k) for k in await medic.keys.list(include_revoked=args.all)]
            _emit(
                args,
                keys,
                ["id", "key_id", "name", "scopes", "expires_at", "last_used_at", "revoked_at"],
            )
        else:
            key = await medic.keys.revoke(args.key, actor=_actor())
            print(f"revoked key {key.key_id}")

    asyncio.run(_with_medic(settings, work))


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


_PRIORITIES = ["p1", "p2", "p3", "p4", "p5"]
_SERVICE_COLUMNS = ["slug", "state", "priority", "team", "last_heartbeat_at", "next_due", "muted"]


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
            _emit(args, await registry.create(data, actor=_actor()), _SERVICE_COLUMNS)
        elif command == "list":
            items: list[dict[str, Any]] = []
            cursor = None
            while True:
                page = await registry.list(
                    state=args.state, team=args.team, tag=args.tag, cursor=cursor, limit=500
                )
                items.extend(page.items)
                cursor = page.next_cursor
                if cursor is None:
                    break
            _emit(args, items, _SERVICE_COLUMNS)
        elif command == "show":
            print(json.dumps(await registry.get(args.slug), indent=2))
        elif command == "mute":
            until = None
            if args.until:
                until = instant(args.until, "until")
            elif args.minutes:
                until = medic.clock.now() + timedelta(minutes=args.minutes)
            _emit(
                args,
                await registry.mute(args.slug, until=until, reason=args.reason, actor=_actor()),
                _SERVICE_COLUMNS,
            )
        else:
            change = getattr(registry, command)
            _emit(args, await change(args.slug, actor=_actor()), _SERVICE_COLUMNS)

    asyncio.run(_with_medic(settings, work))


# -- alert delivery: schedules, escalation policies, targets, a team's policy ----------------------


def _json_option(value: str, option: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise MedicError(f"{option} is not valid JSON: {exc}") from None


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _days(text: str) -> list[str]:
    """``mon-fri,sun`` -> ``["mon", "tue", "wed", "thu", "fri", "sun"]`` (ranges may wrap)."""
    days: list[str] = []
    for part in text.lower().split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise MedicError(
                f"--hours: {part!r} is not a day or a day range: use {', '.join(_DAYS)}, "
                "e.g. mon-fri or sat,sun"
            )
        start = _DAYS.index(first)
        span = (_DAYS.index(last) - start) % 7 if last else 0
        days += [
            _DAYS[(start + i) % 7] for i in range(span + 1) if _DAYS[(start + i) % 7] not in days
        ]
    return days


def _hours(values: Sequence[str]) -> list[dict[str, Any]]:
    """``--hours "mon-fri 09:00-17:30"`` options as the API's ``weekly`` ranges."""
    weekly = []
    for value in values:
        days, _, times = value.strip().partition(" ")
        start, _, end = times.strip().partition("-")
        if not days or not start or not end:
            raise MedicError(
                f"--hours {value!r} must look like 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 09:00-17:30'"
            )
        weekly.append({"days": _days(days), "start": start.strip(), "end": end.strip()})
    return weekly


def _weekly_text(weekly: Sequence[dict[str, Any]]) -> str:
    return "; ".join(f"{','.join(r['days'])} {r['start']}-{r['end']}" for r in weekly)


def _schedule_row(schedule: dict[str, Any]) -> dict[str, Any]:
    return {**schedule, "hours": _weekly_text(schedule["weekly"])}


_SCHEDULE_COLUMNS = ["slug", "name", "timezone", "hours"]


def _emit_view(
    args: argparse.Namespace,
    data: Any,
    columns: Sequence[str],
    view: Callable[[dict[str, Any]], dict[str, Any]],
) -> None:
    """``_emit`` with table rows made by ``view`` (JSON output stays the API form)."""
    if getattr(args, "json", False):
        _emit(args, data)
    elif isinstance(data, list):
        _emit(args, [view(item) for item in data], columns)
    else:
        _emit(args, view(data), columns)


async def _all(list_page: Callable[..., Awaitable[Any]], **filters: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await list_page(**filters, cursor=cursor, limit=500)
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


def cmd_schedule(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.schedule_command
        schedules = medic.schedules
        if command in ("add", "update"):
            data: dict[str, Any] = {}
            if args.hours and args.weekly is not None:
                raise MedicError("give the hours with --hours or --weekly, not both")
            if args.hours:
                data["weekly"] = _hours(args.hours)
            elif args.weekly is not None:
                data["weekly"] = _json_option(args.weekly, "--weekly")
            for key in ("name", "timezone"):
                if getattr(args, key) is not None:
                    data[key] = getattr(args, key)
            if command == "add":
                if "weekly" not in data:
                    raise MedicError("give the hours: --hours 'mon-fri 09:00-17:30' (repeatable)")
                result = await schedules.create({"slug": args.slug, **data}, actor=_actor())
            else:
                result = await schedules.update(args.slug, data, actor=_actor())
            _emit_view(args, result, _SCHEDULE_COLUMNS, _schedule_row)
        elif command == "list":
            _emit_view(args, await _all(schedules.list), _SCHEDULE_COLUMNS, _schedule_row)
        elif command == "show":
            print(json.dumps(await schedules.get(args.slug), indent=2))
        else:
            await schedules.delete(args.slug, actor=_actor())
            print(f"removed schedule {args.slug}")

    asyncio.run(_with_medic(settings, work))


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


def _policy_row(policy: dict[str, Any]) -> dict[str, Any]:
    levels = "; ".join(f"{lv['after']}s: {','.join(lv['targets'])}" for lv in policy["levels"])
    return {**policy, "levels": levels}


_POLICY_COLUMNS = ["slug", "name", "levels", "repeat_every", "max_reminders"]


def cmd_escalation(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.escalation_command
        policies = medic.escalations
        if command in ("add", "update"):
            data: dict[str, Any] = {}
            if args.level and args.levels is not None:
                raise MedicError("give the levels with --level or --levels, not both")
            if args.level:
                data["levels"] = [_level(value) for value in args.level]
            elif args.levels is not None:
                data["levels"] = _json_option(args.levels, "--levels")
            if args.name is not None:
                data["name"] = args.name
            if args.max_reminders is not None:
                data["max_reminders"] = args.max_reminders
            if args.repeat_every is not None:
                data["repeat_every"] = args.repeat_every
            if getattr(args, "no_repeat", False):
                data["repeat_every"] = None
            if command == "add":
                result = await policies.create({"slug": args.slug, **data}, actor=_actor())
            else:
                result = await policies.update(args.slug, data, actor=_actor())
            _emit_view(args, result, _POLICY_COLUMNS, _policy_row)
        elif command == "list":
            _emit_view(args, await _all(policies.list), _POLICY_COLUMNS, _policy_row)
        elif command == "show":
            print(json.dumps(await policies.get(args.slug), indent=2))
        else:
            await policies.delete(args.slug, actor=_actor())
            print(f"removed escalation policy {args.slug}")

    asyncio.run(_with_medic(settings, work))


def _target_config(args: argparse.Namespace) -> Any:
    if args.config is not None and args.config_file is not None:
        raise MedicError("give the configuration with --config or --config-file, not both")
    if args.config is not None:
        return _json_option(args.config, "--config")
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
    return _json_option(raw, f"--config-file {args.config_file}")


def _target_row(target: dict[str, Any]) -> dict[str, Any]:
    if target["service"]:
        owner = f"service:{target['service']}"
    elif target["team"]:
        owner = f"team:{target['team']}"
    else:
        owner = "(fallback)"
    return {**target, "owner": owner}


_TARGET_COLUMNS = ["slug", "notifier", "owner", "min_priority", "period", "schedule", "enabled"]


def _target_fields(args: argparse.Namespace) -> dict[str, Any]:
    data: dict[str, Any] = {}
    config = _target_config(args)
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


_TEST_COLUMNS = ["target", "notifier", "ok", "response_code", "duration_ms", "error"]


def cmd_target(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.target_command
        targets = medic.targets
        if command == "add":
            data = {"slug": args.slug, **_target_fields(args)}
            _emit_view(
                args, await targets.create(data, actor=_actor()), _TARGET_COLUMNS, _target_row
            )
        elif command == "update":
            result = await targets.update(args.slug, _target_fields(args), actor=_actor())
            _emit_view(args, result, _TARGET_COLUMNS, _target_row)
        elif command == "list":
            items = await _all(
                targets.list,
                team=args.team,
                service=args.service,
                notifier=args.notifier,
                enabled=args.enabled,
            )
            _emit_view(args, items, _TARGET_COLUMNS, _target_row)
        elif command == "show":
            print(json.dumps(await targets.get(args.slug), indent=2))
        elif command == "remove":
            await targets.delete(args.slug, actor=_actor())
            print(f"removed target {args.slug}")
        elif command == "test":
            result = await medic.delivery.test_target(args.slug)
            _emit(
                args, result, ["target", "notifier", "ok", "response_code", "duration_ms", "error"]
            )
            if not result.get("ok"):
                raise SystemExit(1)
        else:
            health = await medic.delivery.check_target(args.slug)
            checked = {"target": args.slug, "status": health.status, "detail": health.detail}
            _emit(args, checked, ["target", "status", "detail"])
            if health.status == "down":
                raise SystemExit(1)

    asyncio.run(_with_medic(settings, work))


_DELIVERY_COLUMNS = (
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


def cmd_delivery(args: argparse.Namespace, settings: Settings) -> None:
    async def work(medic: Any) -> None:
        command = args.delivery_command
        delivery = medic.delivery
        if command == "list":
            page = await delivery.list(
                status=args.status, alert_id=args.alert, target=args.target, limit=args.limit
            )
            _emit(args, list(page.items), _DELIVERY_COLUMNS)
        elif command == "show":
            print(json.dumps(await delivery.get(args.id), indent=2))
        elif command == "retry":
            _emit(args, await delivery.redrive(args.id, actor=_actor()), _DELIVERY_COLUMNS)
        else:
            count = await delivery.redrive_failed(target=args.target, actor=_actor())
            print(f"re-driven {count} failed deliveries (the running server sends them)")

    asyncio.run(_with_medic(settings, work))


def cmd_team(args: argparse.Namespace, settings: Settings) -> None:
    if (args.policy is None) == (not args.none):
        raise MedicError("give an escalation policy slug, or --none to remove the team's policy")

    async def work(medic: Any) -> None:
        team = await medic.teams.update(
            args.team, {"escalation_policy": args.policy}, actor=_actor()
        )
        _emit(args, team, ["slug", "name", "escalation_policy"])

    asyncio.run(_with_medic(settings, work))


# -- doctor ---------------------------------------------------------------------------------------

_TARGET_CHECK_TIMEOUT = 30.0


async def _doctor(settings: Settings) -> list[dict[str, str]]:
    """Readiness checks, the schema revision, then every enabled target's own check."""
    from medic_core.app import Medic
    from medic_core.store.migrate import current_revision, head_revision

    medic = Medic(settings)
    try:
        rows = [
            {"check": name, "status": result.status, "detail": result.detail}
            for name, result in (await medic.readiness()).items()
        ]
        if any(r["check"] == "database" and r["status"] == "down" for r in rows):
            return rows  # nothing below can be read
        try:
            current = await current_revision(medic.db)
        except Exception as exc:
            detail = f"cannot read the schema revision: {type(exc).__name__}: {exc}"
            return [*rows, {"check": "schema", "status": "down", "detail": detail[:300]}]
        head = head_revision()
        if current != head:
            detail = f"at {current or 'an empty database'}, latest {head}: run `medic db upgrade`"
            return [*rows, {"check": "schema", "status": "degraded", "detail": detail}]
        rows.append({"check": "schema", "status": "ok", "detail": f"at {head}"})
        return rows + await _doctor_targets(medic)
    finally:
        await medic.stop()


async def _doctor_targets(medic: Any) -> list[dict[str, str]]:
    slugs = [t["slug"] for t in await _all(medic.targets.list, enabled=True)]
    delivery = getattr(medic, "delivery", None)
    if not slugs:
        return []
    if delivery is None:
        detail = f"{len(slugs)} enabled target(s) not checked: this Medic has no delivery service"
        return [{"check": "targets", "status": "degraded", "detail": detail}]

    async def check(target: str) -> dict[str, str]:
        try:
            async with asyncio.timeout(_TARGET_CHECK_TIMEOUT):
                result = await delivery.check_target(target)
        except MedicError as exc:
            return {"check": f"target:{target}", "status": "down", "detail": str(exc)}
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return {"check": f"target:{target}", "status": "down", "detail": detail}
        return {"check": f"target:{target}", "status": result.status, "detail": result.detail}

    return list(await asyncio.gather(*(check(target) for target in slugs)))


def cmd_doctor(args: argparse.Namespace, settings: Settings) -> None:
    rows = asyncio.run(_doctor(settings))
    # A check's detail quotes what its library said, which may include a URL or a token.
    rows = [{**row, "detail": settings.scrub(row["detail"])} for row in rows]
    _emit(args, rows, ["check", "status", "detail"])
    if any(row["status"] == "down" for row in rows):
        raise SystemExit(1)


def cmd_ping(args: argparse.Namespace, settings: Settings) -> None:
    url = (args.url or settings.resolved_public_url).rstrip("/")
    key = args.key or settings.api_key
    if not key:
        raise MedicError("no API key: pass --key or set MEDIC_API_KEY (a key with heartbeat scope)")
    signal = str(args.exit_code) if args.exit_code is not None else args.status
    path = f"/api/v1/ping/{args.slug}" + ("" if signal == "ok" else f"/{signal}")
    if args.run_id:
        path += f"?run_id={urllib.parse.quote(args.run_id)}"
    request = urllib.request.Request(  # noqa: S310 - the URL scheme is the operator's choice
        url + path,
        data=(args.message or "").encode(),
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "text/plain"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:  # noqa: S310
            print(response.read().decode().strip())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read()).get("detail", exc.reason)
        except ValueError:
            detail = exc.reason
        raise MedicError(f"ping failed: HTTP {exc.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError) as exc:
        raise MedicError(f"ping failed: cannot reach {url}: {exc}") from None


def cmd_plugins(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.observability.metrics import Metrics
    from medic_core.plugins.manager import PluginManager

    manager = PluginManager(Metrics(), disabled=settings.disabled_plugin_names)
    rows = [
        {
            "name": p.name,
            "module": p.module,
            "package": p.distribution or "",
            "version": p.version or "",
            "hooks": ", ".join(p.hooks),
        }
        for p in manager.describe()
    ]
    _emit(args, rows, ["name", "package", "version", "module", "hooks"])
    for failure in manager.failures:
        print(f"FAILED {failure.name}: {failure.error}", file=sys.stderr)
    if manager.failures:
        raise SystemExit(1)


def cmd_config(args: argparse.Namespace, settings: Settings) -> None:
    if args.markdown:
        print(settings_markdown(), end="")
    else:
        print(json.dumps(settings.masked(), indent=2))


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medic",
        description="Medic: heartbeat monitoring and auto-remediation. Settings come from MEDIC_* "
        "environment variables (see docs/configuration.md or `medic config --markdown`).",
    )
    parser.add_argument("--version", action="version", version=f"medic {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server (HTTP API, writer, monitor)")
    serve.add_argument("--host", help="listen address (MEDIC_HOST)")
    serve.add_argument("--port", type=int, help="listen port (MEDIC_PORT)")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply migrations up to the latest")
    db_sub.add_parser("current", help="show the applied and latest revisions")
    db.set_defaults(func=cmd_db)

    apikey = sub.add_parser("apikey", help="API keys")
    ak = apikey.add_subparsers(dest="apikey_command", required=True, metavar="ACTION")
    create = ak.add_parser("create", help="create a key and print its token once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope",
        action="append",
        choices=["read", "write", "admin", "heartbeat", "agent"],
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
    add.add_argument("--priority", default="p3", choices=["p1", "p2", "p3", "p4", "p5"])
    add.add_argument("--runbook-url", dest="runbook_url")
    add.add_argument("--max-duration", dest="max_duration", type=int, metavar="SECONDS")
    add.add_argument("--json", action="store_true")
    ls = sv.add_parser("list", help="list services")
    ls.add_argument("--state", choices=["new", "up", "late", "down", "paused"])
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

    ping = sub.add_parser("ping", help="send a heartbeat over HTTP (for cron lines)")
    ping.add_argument("slug")
    ping.add_argument("--status", default="ok", choices=["ok", "start", "success", "fail"])
    ping.add_argument("--exit-code", type=int, help="a process exit code: 0 success, else fail")
    ping.add_argument("--run-id")
    ping.add_argument("--message")
    ping.add_argument("--url", help="Medic's URL (default MEDIC_PUBLIC_URL or the local server)")
    ping.add_argument("--key", help="API key (default MEDIC_API_KEY)")
    ping.add_argument("--timeout", type=float, default=10.0)
    ping.set_defaults(func=cmd_ping)

    plugins = sub.add_parser("plugins", help="plugins")
    pl = plugins.add_subparsers(dest="plugins_command", required=True, metavar="ACTION")
    pls = pl.add_parser("list", help="list loaded plugins and their hooks")
    pls.add_argument("--json", action="store_true")
    plugins.set_defaults(func=cmd_plugins)

    config = sub.add_parser("config", help="show the effective settings")
    config.add_argument("--markdown", action="store_true", help="print the settings reference")
    config.set_defaults(func=cmd_config)

    _add_delivery_commands(sub)

    doctor = sub.add_parser(
        "doctor",
        help="check the database, the schema and every enabled notification target",
        description="Runs the readiness checks (as /health/ready), compares the schema with the "
        "latest migration, then checks each enabled target's configuration without notifying "
        "anyone. Exits 1 when a check is down.",
    )
    doctor.add_argument("--json", action="store_true")
    doctor.set_defaults(func=cmd_doctor)
    return parser


def _add_delivery_commands(sub: Any) -> None:
    """``schedule``, ``escalation``, ``target`` and ``team`` (see docs/alert-delivery.md)."""
    schedule = sub.add_parser("schedule", help="schedules: weekly hours in a time zone")
    sc = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    for action, text in (("add", "create a schedule"), ("update", "change a schedule")):
        p = sc.add_parser(action, help=text)
        p.add_argument("slug")
        p.add_argument("--timezone", required=action == "add", help="IANA zone, e.g. Europe/Berlin")
        p.add_argument(
            "--hours",
            action="append",
            metavar="'DAYS HH:MM-HH:MM'",
            help="a range such as 'mon-fri 09:00-17:30' or 'fri 22:00-06:00' (past midnight); "
            "repeat for several; replaces all ranges",
        )
        p.add_argument("--weekly", metavar="JSON", help="the ranges as the API's weekly JSON")
        p.add_argument("--name")
        p.add_argument("--json", action="store_true")
    sc.add_parser("list", help="list schedules").add_argument("--json", action="store_true")
    sc.add_parser("show", help="show one schedule as JSON").add_argument("slug")
    sc.add_parser("remove", help="delete a schedule no target uses").add_argument("slug")
    schedule.set_defaults(func=cmd_schedule)

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
        p.add_argument("--min-priority", dest="min_priority", choices=_PRIORITIES)
        p.add_argument("--period", choices=["always", "working_hours", "off_hours"])
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

    delivery = sub.add_parser(
        "delivery", help="notification deliveries (the outbox): list, show, re-drive failed ones"
    )
    dl = delivery.add_subparsers(dest="delivery_command", required=True, metavar="ACTION")
    dls = dl.add_parser("list", help="list deliveries, newest first")
    dls.add_argument("--status", choices=["pending", "sent", "failed", "cancelled"])
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

    team = sub.add_parser("team", help="teams")
    tm = team.add_subparsers(dest="team_command", required=True, metavar="ACTION")
    setp = tm.add_parser("set-escalation", help="choose (or with --none, remove) a team's policy")
    setp.add_argument("team")
    setp.add_argument("policy", nargs="?", help="escalation policy slug")
    setp.add_argument("--none", action="store_true", help="no policy: only the first page")
    setp.add_argument("--json", action="store_true")
    team.set_defaults(func=cmd_team)


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides = {}
    if getattr(args, "host", None):
        overrides["host"] = args.host
    if getattr(args, "port", None):
        overrides["port"] = args.port
    try:
        settings = Settings.load(**overrides)
        args.func(args, settings)
    except MedicError as exc:
        print(f"medic: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:
        print(f"medic: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
