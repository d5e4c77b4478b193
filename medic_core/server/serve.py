"""``medic serve``: one process serving HTTP and running the writer and the monitor.

It first waits for the database (``store/wait.py``: back-off, a log line per attempt, up to
``MEDIC_DB_START_WAIT``), then migrates and starts."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys

from aiohttp import web

from medic_core.app import Medic
from medic_core.server.http.app import build_app
from medic_core.server.http.listener import GuardedRunner
from medic_core.settings import Settings
from medic_core.store.wait import wait_for_database

log = logging.getLogger(__name__)


def banner(settings: Settings, medic: Medic, token: str | None) -> str:
    url = settings.resolved_public_url
    lines = [
        "",
        f"  Medic is running at {url}",
        f"  API:        {url}/api/v1/openapi.json",
        f"  Database:   {medic.db.redacted_url()}",
    ]
    if not settings.background:
        lines.append(
            "  Background: off (MEDIC_BACKGROUND=false: another replica alerts and notifies)"
        )
    if token:
        lines += [
            "",
            "  Admin API key (shown ONCE; store it now, it cannot be retrieved later):",
            f"      {token}",
            "",
            "  Sign in by sending it as 'Authorization: Bearer <key>', for example:",
            f"      curl -H 'Authorization: Bearer {token}' {url}/api/v1/services",
        ]
    else:
        lines += [
            "  Admin key:  created on first start (or from MEDIC_ADMIN_KEY); make another with",
            "              medic apikey create --name NAME --scope admin",
        ]
    return "\n".join(lines) + "\n"


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector's pauses rarer and shorter, once everything is loaded.

    A full collection walks every live object; under a flood of refused requests (each held
    for MEDIC_AUTH_FAILURE_DELAY, so thousands stay alive long enough to reach the oldest
    generation) they came every second or two and paused the event loop for 100-200 ms, which
    was most of other clients' p99 (bench/preauth: 120-180 ms; with these settings 57-95 ms).
    Freezing moves the ~150,000 objects of the loaded code out of every future collection;
    the higher thresholds (defaults 700, 10, 10) collect the young generation every 10,000 net
    allocations and the oldest one ten times less often. Cyclic garbage lives a little longer;
    reference counting still frees everything else at once.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 100)


async def serve(settings: Settings) -> None:
    medic = Medic(settings)
    try:
        await wait_for_database(
            medic.db, limit=settings.db_start_wait, ping_timeout=settings.db_connect_timeout + 1
        )
        token = await medic.prepare()
    except Exception as exc:
        await medic.db.close()
        raise SystemExit(
            f"medic: cannot prepare the database {medic.db.redacted_url()}: {exc}"
        ) from None
    try:
        await medic.start(monitor=settings.background)
    except OSError as exc:  # the gRPC port for agents is taken or not allowed
        await medic.stop()
        raise SystemExit(
            f"medic: cannot listen on {settings.host}:{settings.grpc_port} (gRPC): {exc}"
        ) from None
    app = build_app(medic)
    runner = GuardedRunner(
        app,
        limits=medic.http_limits,
        proxies=medic.trusted_proxies,
        metrics=medic.metrics,
        access_log=None,
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=2048)
    try:
        await site.start()
    except OSError as exc:
        await medic.stop()
        await runner.cleanup()
        raise SystemExit(
            f"medic: cannot listen on {settings.host}:{settings.port}: {exc}"
        ) from None
    sys.stdout.write(settings.scrub(banner(settings, medic, token)))
    sys.stdout.flush()
    tune_garbage_collector()
    log.info("medic started", extra={"url": settings.resolved_public_url})

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("medic stopping")
    # Stop taking connections first, then let the writer finish what it holds.
    await site.stop()
    await medic.stop()
    await runner.cleanup()
    log.info("medic stopped")
