"""``medic ping``: send one heartbeat over HTTP, for cron lines and scripts.

A plain HTTP client of the running server (``POST /api/v1/ping/{slug}[/{signal}]``) with the
standard library only: it needs no database and imports nothing of the store. Every failure
(no key, an HTTP error, an unreachable server) is one ``medic: ...`` line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.parse
import urllib.request

from medic_core.cli.common import Subcommands
from medic_core.errors import MedicError
from medic_core.settings import Settings

#: ``medic_core.heartbeats.model.STATUSES`` (a unit test keeps them equal).
STATUSES = ["ok", "start", "success", "fail"]


def add_parser(sub: Subcommands) -> None:
    ping = sub.add_parser("ping", help="send a heartbeat over HTTP (for cron lines)")
    ping.add_argument("slug")
    ping.add_argument("--status", default="ok", choices=STATUSES)
    ping.add_argument("--exit-code", type=int, help="a process exit code: 0 success, else fail")
    ping.add_argument("--run-id")
    ping.add_argument("--message")
    ping.add_argument("--url", help="Medic's URL (default MEDIC_PUBLIC_URL or the local server)")
    ping.add_argument("--key", help="API key (default MEDIC_API_KEY)")
    ping.add_argument("--timeout", type=float, default=10.0)
    ping.set_defaults(func=cmd_ping)


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
