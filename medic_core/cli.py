"""The ``medic`` command line.

Administrative commands (``db``, ``apikey``, ``service``, ``plugins``) work on the database named
by the settings, through the same domain code the API uses; ``ping`` is an HTTP client for cron
lines and scripts.
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
        await medic.db.close()


# -- commands ---------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace, settings: Settings) -> None:
    from medic_core.observability.logs import configure_logging
    from medic_core.observability.tracing import configure_tracing
    from medic_core.server.serve import serve

    configure_logging(settings.log_level, json=settings.log_format == "json")
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
        shown = {
            k: ("***" if k in ("admin_key", "api_key") and v else v)
            for k, v in vars(settings).items()
        }
        print(json.dumps(shown, indent=2))


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
    return parser


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
