"""Monitor benchmark: alert latency at 100,000 services, and the monitor's CPU when idle.

For each database it creates ``--services`` services directly in the ``services`` table (bulk
Core inserts: state ``up``, a last heartbeat, ``expected_at`` = ``next_due``), then runs the real
``medic serve`` process, so the real monitor loop does the work.

1. **Idle**: every deadline is hours away. After a settle period, the server's CPU time (utime +
   stime from /proc) is measured over ``--idle-seconds`` and reported as CPU seconds per minute.
2. **Deadlines**: with the server stopped, ``--due`` services get deadlines spread evenly over
   ``--window`` seconds starting ``--lead`` seconds after the server is started; the rest stay
   hours away. While the server runs, an outside poller reads new alert rows every
   ``--poll-interval`` seconds. Afterwards, for each service:

   - detection latency = ``alerts.opened_at`` - the service's deadline (``next_due``). The
     monitor stamps ``opened_at`` from its clock when the pass that claims the row starts, so
     this is how late the monitor noticed;
   - visible latency = when the poller first saw the committed alert - the deadline (includes
     the transaction and up to one poll interval);
   - exactly one ``missed`` alert per passed deadline, none for the others.

    .venv/bin/python bench/monitor/run.py --database both --services 100000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import (
    Server,
    Target,
    cpu_seconds,
    database,
    machine,
    migrate,
    percentile,
    table,
    write_results,
)

PREFIX = "mon-"
CHUNK = 5000
FAR = timedelta(hours=6)


def _db(url: str) -> Any:
    from medic_core.store import Database

    return Database(url, pool_size=2)


def create_services(url: str, count: int) -> float:
    """Insert ``count`` up services whose deadlines are hours away; return seconds taken."""
    from sqlalchemy import insert

    from medic_core.store.models import Service

    async def run() -> None:
        db = _db(url)
        now = datetime.now(UTC)
        try:
            for start in range(0, count, CHUNK):
                rows = []
                for n in range(start, min(count, start + CHUNK)):
                    due = now + FAR + timedelta(seconds=n % 3600)
                    rows.append(
                        {
                            "slug": f"{PREFIX}{n}",
                            "name": f"Monitor bench {n}",
                            "tags": [],
                            "priority": "p3",
                            "description": "",
                            "expectation": {"kind": "interval", "period": 60},
                            "grace": 0,
                            "state": "up",
                            "last_heartbeat_at": now,
                            "last_status": "ok",
                            "expected_at": due,
                            "next_due": due,
                            "recent_beats": [],
                            "muted": False,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                async with db.transaction() as session:
                    await session.execute(insert(Service.__table__), rows)  # type: ignore[arg-type]
        finally:
            await db.close()

    started = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - started


def set_deadlines(url: str, deadlines: dict[int, datetime]) -> None:
    """Give the services with these ids these deadlines (expected_at = next_due, no grace)."""
    from sqlalchemy import bindparam, update

    from medic_core.store.models import Service

    table = Service.__table__
    stmt = (
        update(table)  # type: ignore[arg-type]
        .where(table.c.id == bindparam("sid"))
        .values(expected_at=bindparam("due"), next_due=bindparam("due"))
    )

    async def run() -> None:
        db = _db(url)
        items = [{"sid": sid, "due": due} for sid, due in deadlines.items()]
        try:
            for start in range(0, len(items), CHUNK):
                async with db.transaction() as session:
                    await session.execute(stmt, items[start : start + CHUNK])
        finally:
            await db.close()

    asyncio.run(run())


def service_ids(url: str, count: int) -> list[int]:
    from sqlalchemy import select

    from medic_core.store.models import Service

    async def run() -> list[int]:
        db = _db(url)
        try:
            async with db.sessions() as session:
                ids = (await session.scalars(select(Service.id).order_by(Service.id))).all()
        finally:
            await db.close()
        return list(ids)[:count]

    return asyncio.run(run())


class AlertPoller(threading.Thread):
    """Reads new alert rows every ``interval`` seconds and notes when each was first seen."""

    def __init__(self, url: str, interval: float, expected: int, timeout: float) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.interval = interval
        self.expected = expected
        self.timeout = timeout
        self.seen: dict[int, float] = {}  # service_id -> wall clock when first seen
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._poll())
        except BaseException as exc:
            self.error = exc

    async def _poll(self) -> None:
        from sqlalchemy import select

        from medic_core.store.models import Alert

        db = _db(self.url)
        last_id = 0
        deadline = time.monotonic() + self.timeout
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                async with db.sessions() as session:
                    rows = (
                        await session.execute(
                            select(Alert.id, Alert.service_id)
                            .where(Alert.id > last_id, Alert.cause == "missed")
                            .order_by(Alert.id)
                        )
                    ).all()
                now = time.time()
                for alert_id, service_id in rows:
                    self.seen.setdefault(service_id, now)
                    last_id = max(last_id, alert_id)
                if len(self.seen) >= self.expected:
                    return
                await asyncio.sleep(self.interval)
        finally:
            await db.close()


def read_alerts(url: str) -> list[tuple[int, datetime, dict[str, Any]]]:
    from sqlalchemy import select

    from medic_core.store.models import Alert

    async def run() -> list[tuple[int, datetime, dict[str, Any]]]:
        db = _db(url)
        try:
            async with db.sessions() as session:
                rows = (
                    await session.execute(
                        select(Alert.service_id, Alert.opened_at, Alert.details).where(
                            Alert.cause == "missed"
                        )
                    )
                ).all()
        finally:
            await db.close()
        return [(r[0], r[1], r[2] or {}) for r in rows]

    return asyncio.run(run())


def stats_ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {
        "p50": round(percentile(ordered, 50) * 1000, 1),
        "p99": round(percentile(ordered, 99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
        "min": round(ordered[0] * 1000, 1),
    }


def idle_phase(target: Target, url: str, args: argparse.Namespace) -> dict[str, Any]:
    server = Server(url, target.workdir / "server-idle")
    server.start(timeout=120)
    try:
        time.sleep(args.settle)
        c0, d0, t0 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        time.sleep(args.idle_seconds)
        c1, d1, t1 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        metrics = server.metrics()
    finally:
        server.stop()
    wall = t1 - t0
    return {
        "idle_seconds": round(wall, 1),
        "idle_cpu_s_per_min": round((c1 - c0) / wall * 60, 3),
        "idle_postgres_cpu_s_per_min": (
            round((d1 - d0) / wall * 60, 3) if d0 is not None and d1 is not None else None
        ),
        "idle_alerts": metrics.get("medic_alerts_total", 0.0),
    }


def deadline_phase(target: Target, url: str, due: int, args: argparse.Namespace) -> dict[str, Any]:
    ids = service_ids(url, args.services)
    due_ids = ids[:due]
    start = datetime.now(UTC) + timedelta(seconds=args.lead)
    step = args.window / max(1, len(due_ids))
    deadlines = {sid: start + timedelta(seconds=i * step) for i, sid in enumerate(due_ids)}
    if not deadlines:
        return {"due": 0}
    set_deadlines(url, deadlines)
    server = Server(url, target.workdir / "server-deadlines")
    last_deadline = max(deadlines.values())
    budget = (last_deadline - datetime.now(UTC)).total_seconds() + args.timeout
    poller = AlertPoller(url, args.poll_interval, len(deadlines), budget)
    server.start(timeout=120)
    try:
        poller.start()
        c0, d0, t0 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        poller.join(budget + 10)
        c1, d1, t1 = cpu_seconds([server.pid]), target.postgres_cpu(), time.monotonic()
        poller.stop.set()
        time.sleep(min(5.0, args.timeout))  # anything late or duplicated would show up now
        metrics = server.metrics()
    finally:
        poller.stop.set()
        server.stop()
    if poller.error is not None:
        raise poller.error
    alerts = read_alerts(url)
    per_service = Counter(sid for sid, _, _ in alerts)
    detection: list[float] = []
    visible: list[float] = []
    mismatched = 0
    for sid, opened_at, details in alerts:
        due = deadlines.get(sid)
        if due is None:
            continue
        detection.append((opened_at - due).total_seconds())
        recorded = details.get("deadline")
        if recorded and datetime.fromisoformat(recorded) != due:
            mismatched += 1
    for sid, seen in poller.seen.items():
        if sid in deadlines:
            visible.append(seen - deadlines[sid].timestamp())
    det, vis = stats_ms(detection), stats_ms(visible)
    wall = t1 - t0
    return {
        "due": len(deadlines),
        "window_s": args.window,
        "missed_alerts": sum(1 for sid in per_service if sid in deadlines),
        "missing_alerts": sum(1 for sid in deadlines if sid not in per_service),
        "duplicate_alerts": sum(n - 1 for n in per_service.values() if n > 1),
        "unexpected_alerts": sum(1 for sid in per_service if sid not in deadlines),
        "deadline_mismatch": mismatched,
        "early_alerts": sum(1 for v in detection if v < 0),
        "detect_p50_ms": det["p50"],
        "detect_p99_ms": det["p99"],
        "detect_max_ms": det["max"],
        "visible_p50_ms": vis["p50"],
        "visible_p99_ms": vis["p99"],
        "visible_max_ms": vis["max"],
        "run_cpu_pct": round(100 * (c1 - c0) / wall),
        "run_postgres_cpu_pct": (
            round(100 * (d1 - d0) / wall) if d0 is not None and d1 is not None else None
        ),
        "events_dropped": metrics.get("medic_events_dropped_total", 0.0),
        "notifications": metrics.get("medic_notifications_total", 0.0),
    }


def run_database(kind: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with database(kind, keep=args.keep) as target:
        for n, due in enumerate(args.due_list):
            url = target.fresh_url("monitor")
            migrate(url)
            print(f"-- {kind}: inserting {args.services} services", flush=True)
            insert_s = create_services(url, args.services)
            row: dict[str, Any] = {"database": kind, "services": args.services}
            row["insert_s"] = round(insert_s, 1)
            if n == 0 and args.idle_seconds > 0:
                print(f"-- {kind}: idle CPU over {args.idle_seconds:g}s", flush=True)
                row.update(idle_phase(target, url, args))
            if due > 0:
                print(
                    f"-- {kind}: {due} deadlines over {args.window:g}s "
                    f"starting {args.lead:g}s after start",
                    flush=True,
                )
                row["loadavg_1m_before"] = round(os.getloadavg()[0], 2)
                row.update(deadline_phase(target, url, due, args))
                row["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(table([row], COLUMNS), flush=True)
    return rows


COLUMNS = (
    "database",
    "services",
    "due",
    "window_s",
    "missed_alerts",
    "missing_alerts",
    "duplicate_alerts",
    "unexpected_alerts",
    "detect_p50_ms",
    "detect_p99_ms",
    "detect_max_ms",
    "visible_p50_ms",
    "visible_p99_ms",
    "visible_max_ms",
    "run_cpu_pct",
    "events_dropped",
    "idle_cpu_s_per_min",
    "idle_postgres_cpu_s_per_min",
    "loadavg_1m_before",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Alert latency at N services, and the idle CPU of the monitor, "
        "through the real medic server process.",
    )
    parser.add_argument("--database", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--services", type=int, default=100_000, help="services (default 100000)")
    parser.add_argument(
        "--due",
        default="all",
        help="how many services' deadlines pass in the window; a comma-separated list runs "
        "one fresh database per value (default: all)",
    )
    parser.add_argument("--lead", type=float, default=20, help="seconds to first deadline (20)")
    parser.add_argument("--window", type=float, default=60, help="deadline spread, s (60)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="alert poll, s (0.1)")
    parser.add_argument("--timeout", type=float, default=60, help="wait after last deadline (60)")
    parser.add_argument("--idle-seconds", type=float, default=30, help="idle CPU window (30)")
    parser.add_argument("--settle", type=float, default=5, help="wait before idle CPU (5)")
    parser.add_argument("--label", default="", help="free text stored with the results")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dirs")
    args = parser.parse_args(argv)
    if not 1 <= args.services <= 1_000_000:
        parser.error("--services must be 1..1000000")
    try:
        args.due_list = [
            args.services if d.strip() == "all" else int(d) for d in args.due.split(",")
        ]
    except ValueError:
        parser.error("--due takes counts (or 'all'), comma-separated")
    if any(not 0 <= d <= args.services for d in args.due_list):
        parser.error("--due values must be 0..--services")
    if not 5 <= args.lead <= 600 or not 0 < args.window <= 3600:
        parser.error("--lead must be 5..600 s and --window 0..3600 s")
    if not 0 <= args.idle_seconds <= 600 or not 0 < args.timeout <= 600:
        parser.error("--idle-seconds must be 0..600 s and --timeout 0..600 s")
    if not 0.01 <= args.poll_interval <= 5:
        parser.error("--poll-interval must be 0.01..5 s")
    kinds = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    rows = []
    for kind in kinds:
        rows.extend(run_database(kind, args))
    print()
    print(table(rows, COLUMNS))
    path = write_results(
        "monitor",
        {"label": args.label, "args": vars(args), "machine": machine(), "results": rows},
    )
    print(f"\nresults: {path}")
    bad = [
        r
        for r in rows
        if r.get("missing_alerts") or r.get("duplicate_alerts") or r.get("unexpected_alerts")
    ]
    if bad:
        print("ALERT CHECK FAILED: missing, duplicate or unexpected alerts", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
