"""PostgreSQL goes away under load and comes back; Medic keeps running throughout.

A private cluster (not the session one: this test stops it) serves one Medic process while
concurrent clients post heartbeats. PostgreSQL is stopped (``pg_ctl stop -m fast``) for a few
seconds and started again. Proven: (i) no 2xx for a heartbeat that is not stored; (ii) during the
outage heartbeats are refused fast, 503 with Retry-After; (iii) ingest recovers by itself;
(iv) /health/ready is 503 with the database check down during the outage, 200 after.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from support.postgres import PgCluster
from support.server import (
    Attempt,
    ServerProcess,
    acked_messages,
    heartbeat_load,
    stored_messages,
)

pytestmark = pytest.mark.e2e

SLUG = "resilient"
OUTAGE = 3.0  # seconds PostgreSQL stays down (longer than the 1 s key cache below)
KINDS = ("single", "single", "single", "batch", "single", "single")
MIN_ACKED = 200
RECOVERY_BOUND = 15.0  # ingest must work again this soon after PostgreSQL is back
ENV = {
    "MEDIC_RATE_LIMIT": "0",
    # Verified keys are cached this long; the outage outlasts it, so requests that must look
    # their key up in the (unreachable) database are part of what is tested.
    "MEDIC_KEY_CACHE_TTL": "1",
    "MEDIC_DB_CONNECT_TIMEOUT": "3",
}


@dataclass(frozen=True)
class Probe:
    started: float
    ended: float
    status: int | None
    body: Any


async def poll_ready(url: str, stop: asyncio.Event, probes: list[Probe]) -> None:
    """GET /health/ready every 0.2 s until ``stop`` (bounded: at most 300 probes)."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(url, timeout=timeout) as http:
        for _ in range(300):
            if stop.is_set():
                return
            started = time.monotonic()
            try:
                async with http.get("/health/ready") as response:
                    body = await response.json(content_type=None)
                    probes.append(Probe(started, time.monotonic(), response.status, body))
            except (aiohttp.ClientError, TimeoutError) as exc:
                probes.append(Probe(started, time.monotonic(), None, repr(exc)))
            await asyncio.sleep(0.2)


@dataclass
class Outage:
    """What one run of the scenario observed (times are ``time.monotonic()``)."""

    attempts: list[Attempt]
    probes: list[Probe]
    acked_before: int
    stopping_at: float  # pg_ctl stop called
    down_at: float  # pg_ctl stop returned: PostgreSQL is down
    starting_at: float  # pg_ctl start called
    up_at: float  # pg_ctl start returned: PostgreSQL accepts connections
    recovered_at: float | None  # first heartbeat stored after up_at
    survived: bool  # the same Medic process ran throughout
    stored: set[str] = field(default_factory=set)
    ready_after: tuple[int, Any] | None = None  # /health/ready once recovered
    stop_code: int | None = None
    stderr: str = ""

    def context(self) -> str:
        statuses = dict(Counter((a.kind, a.status) for a in self.attempts))
        return (
            f"statuses {statuses}; pg_ctl stop took {self.down_at - self.stopping_at:.2f}s, "
            f"start {self.up_at - self.starting_at:.2f}s\n"
            f"--- medic stderr (tail) ---\n{self.stderr[-2500:]}"
        )

    def single_during_outage(self) -> list[Attempt]:
        return [
            a
            for a in self.attempts
            if a.kind == "single" and a.started >= self.down_at and a.ended <= self.starting_at
        ]


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    """Run the scenario once; the tests below each check one property of what it observed."""
    # Its own temporary directory (pytest's tmp_path is not readable by the postgres user).
    cluster = PgCluster()
    server: ServerProcess | None = None
    try:
        cluster.init()
        cluster.start()
        cluster.create_database("medic")
        server = ServerProcess(
            tmp_path_factory.mktemp("medic"), database_url=cluster.url("medic"), env=ENV
        )
        server.start()
        result = asyncio.run(run_outage(server, cluster))
        result.stop_code = server.stop()
        result.stderr = server.stderr
        yield result
    finally:
        if server is not None:
            server.close()
        cluster.destroy()


async def run_outage(server: ServerProcess, cluster: PgCluster) -> Outage:
    assert server.admin_key
    async with (
        aiohttp.ClientSession(server.url, headers=server.headers) as http,
        http.post(
            "/api/v1/services",
            json={"slug": SLUG, "expectation": {"kind": "interval", "period": 3600}},
        ) as response,
    ):
        assert response.status == 201, await response.text()
    pid = server.pid

    attempts: list[Attempt] = []
    probes: list[Probe] = []
    stop = asyncio.Event()
    load = asyncio.create_task(
        heartbeat_load(
            server.url,
            server.admin_key,
            SLUG,
            clients=len(KINDS),
            duration=45.0,
            max_requests=50_000,
            stop=stop,
            kinds=KINDS,
            prefix="pg",
            attempts=attempts,
        )
    )
    ready = asyncio.create_task(poll_ready(server.url, stop, probes))
    try:
        deadline = time.monotonic() + 20
        while len(acked_messages(attempts)) < MIN_ACKED:
            assert not load.done() and time.monotonic() < deadline, (
                f"load never reached {MIN_ACKED} acknowledged heartbeats: "
                f"{Counter(a.status for a in attempts)}\n{server.stderr[-3000:]}"
            )
            await asyncio.sleep(0.05)
        acked_before = len(acked_messages(attempts))

        stopping_at = time.monotonic()
        await asyncio.to_thread(cluster.stop, "fast")
        down_at = time.monotonic()
        await asyncio.sleep(OUTAGE)
        starting_at = time.monotonic()
        await asyncio.to_thread(cluster.start)
        up_at = time.monotonic()

        recovered_at: float | None = None
        bound = up_at + RECOVERY_BOUND
        while recovered_at is None and time.monotonic() < bound and not load.done():
            ok = [a.ended for a in attempts if a.started >= up_at and a.acked]
            recovered_at = min(ok) if ok else None
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # some load after the recovery
    finally:
        stop.set()
        await asyncio.gather(load, ready)

    result = Outage(
        attempts=attempts,
        probes=probes,
        acked_before=acked_before,
        stopping_at=stopping_at,
        down_at=down_at,
        starting_at=starting_at,
        up_at=up_at,
        recovered_at=recovered_at,
        survived=server.running and server.pid == pid,
    )
    result.stored = await stored_messages(server.database_url, SLUG)
    async with aiohttp.ClientSession(server.url) as http:
        deadline = time.monotonic() + 10
        while True:
            async with http.get("/health/ready") as response:
                result.ready_after = (response.status, await response.json(content_type=None))
            if response.status == 200 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    return result


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else max(values)


def test_no_2xx_for_a_heartbeat_that_is_not_stored(outage: Outage) -> None:
    acked = acked_messages(outage.attempts)
    assert outage.acked_before >= MIN_ACKED
    missing = acked - outage.stored
    assert not missing, (
        f"{len(missing)} of {len(acked)} heartbeats answered 2xx are NOT stored, "
        f"e.g. {sorted(missing)[:10]}\n{outage.context()}"
    )
    assert outage.stored <= {m for a in outage.attempts for m in a.messages}
    during = [
        a for a in outage.attempts if a.started >= outage.down_at and a.ended <= outage.starting_at
    ]
    assert not [a for a in during if a.acked], "acknowledged while PostgreSQL was down"


def test_outage_requests_fail_fast_with_503_and_retry_after(outage: Outage) -> None:
    during = outage.single_during_outage()
    assert len(during) >= 20, f"only {len(during)} requests during the outage\n{outage.context()}"
    statuses = Counter(a.status for a in during)
    assert set(statuses) == {503}, (
        f"during the outage heartbeats got {dict(statuses)}, expected only 503\n{outage.context()}"
    )
    assert all(a.retry_after and int(a.retry_after) >= 1 for a in during), outage.context()
    latencies = [a.elapsed for a in during]
    assert p95(latencies) < 2.0, (
        f"outage answers too slow: p95 {p95(latencies):.2f}s, max {max(latencies):.2f}s"
    )


def test_every_answer_is_2xx_or_503_never_500(outage: Outage) -> None:
    # Around the outage too (PostgreSQL shutting down / starting up) and on every endpoint:
    # an unreachable database is "retry later", not an internal error.
    unexpected = Counter(
        (a.kind, a.status) for a in outage.attempts if a.status not in (200, 201, 503)
    )
    assert not unexpected, f"answers neither 2xx nor 503: {dict(unexpected)}\n{outage.context()}"
    assert not [a for a in outage.attempts if a.status is None], "connection errors from Medic"


def test_ingest_recovers_without_restarting_medic(outage: Outage) -> None:
    assert outage.survived, "Medic did not survive the outage"
    assert outage.recovered_at is not None, (
        f"no heartbeat stored within {RECOVERY_BOUND}s of PostgreSQL's return\n{outage.context()}"
    )
    after = [a for a in outage.attempts if a.started >= outage.recovered_at + 0.3]
    assert after and all(a.acked for a in after if a.kind == "single"), (
        f"ingest not steady after recovery: {Counter(a.status for a in after)}"
    )
    assert outage.stop_code == 0, outage.stderr[-3000:]


def test_readiness_is_503_during_outage_and_200_after(outage: Outage) -> None:
    during = [
        p for p in outage.probes if p.started >= outage.down_at and p.ended <= outage.starting_at
    ]
    assert during, "no readiness probe ran during the outage"
    for probe in during:
        assert probe.status == 503, probe
        assert probe.body["status"] == "unavailable", probe.body
        # Probes send no key: the public view (name and ok/failing, no detail).
        assert probe.body["checks"]["database"] == {"status": "failing"}, probe.body
    assert all(p.ended - p.started < 3.0 for p in during), "readiness probes hung"
    assert outage.ready_after is not None
    status, body = outage.ready_after
    assert status == 200, body
    assert body["checks"]["database"]["status"] == "ok", body


def test_outage_is_logged_briefly_not_a_traceback_per_request(outage: Outage) -> None:
    tracebacks = outage.stderr.count("Traceback (most recent call last)")
    requests = len([a for a in outage.attempts if a.started >= outage.stopping_at])
    assert tracebacks <= 10, (
        f"{tracebacks} tracebacks logged for {requests} requests during a {OUTAGE:.0f}s outage "
        f"({len(outage.stderr) // 1024} KiB of stderr)"
    )
