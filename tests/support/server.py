"""Run the real ``medic serve`` process for end-to-end tests and benchmarks.

Typical use::

    server = ServerProcess(tmp_path)                 # SQLite at tmp_path/medic.db
    server = ServerProcess(tmp_path, database_url=pg_url, env={"MEDIC_RATE_LIMIT": "0"})
    server.start()          # spawn `.venv/bin/medic serve`, wait for /health and the banner
    server.url              # http://127.0.0.1:<free port>
    server.admin_key        # the admin token (MEDIC_ADMIN_KEY, or the one the banner printed)
    server.headers          # {"Authorization": "Bearer <admin key>"}
    server.stdout, server.stderr    # what the current run printed so far
    server.stop()           # SIGTERM, wait for a graceful exit; returns the exit code
    server.kill()           # SIGKILL; returns the exit code (-9)
    server.close()          # kill if still running (use in fixture teardown)

It is also a context manager (``with ServerProcess(tmp_path) as server:`` starts and closes).
``start()`` may be called again after ``stop()``/``kill()`` to restart on the same database and
port; each run writes its own ``server-<n>.stdout``/``.stderr`` under ``data_dir``.

The environment passed to the server is the caller's minus every ``MEDIC_*`` variable, plus:
``MEDIC_DATA_DIR``, ``MEDIC_DATABASE_URL`` (if given), ``MEDIC_HOST=127.0.0.1``, ``MEDIC_PORT``,
``MEDIC_ADMIN_KEY`` (unless ``set_admin_key=False``), ``MEDIC_LOG_FORMAT=text`` and
``MEDIC_MONITOR_MAX_SLEEP=0.5``; ``env`` overrides any of them. All traffic is to 127.0.0.1.

Also here, for the tests that load the server: ``make_admin_key()``, ``heartbeat_load()`` (a
bounded concurrent load generator that records every attempt) and ``stored_messages()`` (read
back, straight from the database, which heartbeat messages are stored).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from support.postgres import free_port

#: The shape of a Medic API token: ``medic_<12 hex>_<43 url-safe characters>``.
TOKEN_RE = re.compile(r"medic_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def medic_bin() -> Path:
    """The ``medic`` console script of the virtualenv running the tests."""
    candidates = [
        Path(sys.executable).with_name("medic"),
        Path(__file__).resolve().parents[2] / ".venv" / "bin" / "medic",
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise RuntimeError(
        f"the medic command is not installed (looked at {', '.join(map(str, candidates))}): "
        "run `pip install -e .` in the virtualenv"
    )


def make_admin_key() -> str:
    """A fresh token in the format Medic issues (usable as ``MEDIC_ADMIN_KEY``)."""
    return f"medic_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def cli_env(data_dir: Path | str, **medic: str) -> dict[str, str]:
    """The caller's environment without ``MEDIC_*``, plus ``MEDIC_DATA_DIR`` and ``medic``.

    ``cli_env(tmp, MEDIC_DATABASE_URL=url)`` is what a subprocess ``medic ...`` should get.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIC_")}
    env["MEDIC_DATA_DIR"] = str(data_dir)
    env.update(medic)
    return env


class ServerStartError(RuntimeError):
    """The server did not become ready; the message carries its exit code, stdout and stderr."""


class ServerProcess:
    """One ``medic serve`` process (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        database_url: str = "",
        admin_key: str | None = None,
        set_admin_key: bool = True,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.database_url = database_url or f"sqlite:///{self.data_dir / 'medic.db'}"
        self._configured_url = database_url
        self.set_admin_key = set_admin_key
        self.admin_key: str | None = (admin_key or make_admin_key()) if set_admin_key else None
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self._out: Path | None = None
        self._err: Path | None = None
        self._files: list[IO[bytes]] = []

    # -- what callers read -------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        if not self.admin_key:
            raise RuntimeError("no admin key known for this server")
        return {"Authorization": f"Bearer {self.admin_key}"}

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the server was not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace") if self._out and self._out.exists() else ""

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace") if self._err and self._err.exists() else ""

    def environment(self) -> dict[str, str]:
        medic = {
            "MEDIC_HOST": "127.0.0.1",
            "MEDIC_PORT": str(self.port),
            "MEDIC_LOG_FORMAT": "text",
            "MEDIC_MONITOR_MAX_SLEEP": "0.5",
        }
        if self._configured_url:
            medic["MEDIC_DATABASE_URL"] = self._configured_url
        if self.set_admin_key and self.admin_key:
            medic["MEDIC_ADMIN_KEY"] = self.admin_key
        medic.update(self.extra_env)
        return cli_env(self.data_dir, **medic)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Spawn the server and wait until it answers ``GET /health`` and printed its banner.

        Raises ``ServerStartError`` (with the process's stdout and stderr) if it exits early or
        is not ready within ``timeout`` seconds; a port lost to a race is retried on a new one.
        """
        if self.running:
            raise RuntimeError("the server is already running")
        for attempt in range(3):
            try:
                self._spawn_and_wait(timeout)
                return self
            except ServerStartError as exc:
                lost_port = "cannot listen" in str(exc)
                if not lost_port or self._fixed_port or attempt == 2:
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    def _spawn_and_wait(self, timeout: float) -> None:
        self._close_files()
        self.runs += 1
        self._out = self.data_dir / f"server-{self.runs}.stdout"
        self._err = self.data_dir / f"server-{self.runs}.stderr"
        out = self._out.open("wb")
        err = self._err.open("wb")
        self._files = [out, err]
        self.process = self._launch(out, err)
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServerStartError(self._describe(f"medic serve exited with code {code}"))
            if self._healthy() and "Medic is running at" in self.stdout:
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServerStartError(
                    self._describe(f"medic serve was not ready within {timeout:.0f}s")
                )
            time.sleep(0.05)
        if not self.set_admin_key:
            found = TOKEN_RE.findall(self.stdout)
            self.admin_key = found[0] if found else self.admin_key

    def _launch(self, out: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start ``medic serve`` (a subclass may start it another way: ``support.warm``)."""
        return subprocess.Popen(
            [str(medic_bin()), "serve"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=self.environment(),
            cwd=self.data_dir,
            start_new_session=True,
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1.0) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _describe(self, what: str) -> str:
        return (
            f"{what} (url {self.url}, database {self.database_url})\n"
            f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-8000:]}"
        )

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit; SIGKILL and raise if it takes longer than ``timeout``."""
        process = self._require_process()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError(
                    self._describe(f"medic serve did not stop within {timeout:.0f}s of SIGTERM")
                ) from None
        self._close_files()
        return int(process.returncode)

    def kill(self) -> int:
        """SIGKILL (no chance to clean up) and reap the process; returns its exit code."""
        process = self._require_process()
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        self._close_files()
        return int(process.returncode)

    def close(self) -> None:
        """Kill the process if it still runs; safe to call any number of times."""
        if self.process is not None and self.process.poll() is None:
            self.kill()
        self._close_files()

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise RuntimeError("the server was not started")
        return self.process

    def _close_files(self) -> None:
        for fh in self._files:
            fh.close()
        self._files = []

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- load and read-back ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """One request of a load run."""

    kind: str  # "single" (POST /api/v1/heartbeats), "batch" (…:batch) or "ping"
    messages: tuple[str, ...]  # the message ids sent
    acked: tuple[str, ...]  # of those, the ones the server said are stored (2xx / item ok)
    status: int | None  # HTTP status; None: connection error or client timeout
    started: float  # time.monotonic() when sent
    elapsed: float  # seconds until the answer (or the error)
    retry_after: str | None = None
    error: str | None = None

    @property
    def ended(self) -> float:
        return self.started + self.elapsed


async def heartbeat_load(
    url: str,
    key: str,
    slug: str,
    *,
    clients: int = 8,
    duration: float = 5.0,
    max_requests: int = 5000,
    stop: asyncio.Event | None = None,
    kinds: tuple[str, ...] = ("single",),
    batch_size: int = 10,
    prefix: str = "m",
    request_timeout: float = 10.0,
    attempts: list[Attempt] | None = None,
) -> list[Attempt]:
    """Send heartbeats with unique messages from ``clients`` concurrent tasks and record each try.

    Bounded: every client stops after ``duration`` seconds, ``max_requests`` requests, or when
    ``stop`` is set, whichever comes first. Client ``i`` uses ``kinds[i % len(kinds)]``. Pass
    ``attempts`` to watch the list fill while the load runs; it is also returned.
    """
    import aiohttp

    record: list[Attempt] = [] if attempts is None else attempts
    stop = stop or asyncio.Event()
    deadline = time.monotonic() + duration
    auth = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=request_timeout)

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        kind = kinds[index % len(kinds)]
        for n in range(max_requests):
            if stop.is_set() or time.monotonic() >= deadline:
                return
            base = f"{prefix}-{index}-{n}"
            messages = (
                tuple(f"{base}-{i}" for i in range(batch_size)) if kind == "batch" else (base,)
            )
            started = time.monotonic()
            try:
                if kind == "single":
                    request = session.post(
                        f"{url}/api/v1/heartbeats",
                        json={"service": slug, "message": messages[0]},
                        headers=auth,
                    )
                elif kind == "batch":
                    request = session.post(
                        f"{url}/api/v1/heartbeats:batch",
                        json={"heartbeats": [{"service": slug, "message": m} for m in messages]},
                        headers=auth,
                    )
                else:
                    request = session.post(
                        f"{url}/api/v1/ping/{slug}", data=messages[0].encode(), headers=auth
                    )
                async with request as response:
                    body: Any = await response.read()
                    acked: tuple[str, ...] = ()
                    if 200 <= response.status < 300:
                        if kind == "batch":
                            results = json.loads(body)["results"]
                            acked = tuple(
                                m for m, r in zip(messages, results, strict=True) if r["ok"]
                            )
                        else:
                            acked = messages
                    record.append(
                        Attempt(
                            kind,
                            messages,
                            acked,
                            response.status,
                            started,
                            time.monotonic() - started,
                            response.headers.get("Retry-After"),
                        )
                    )
            except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
                record.append(
                    Attempt(
                        kind,
                        messages,
                        (),
                        None,
                        started,
                        time.monotonic() - started,
                        error=f"{type(exc).__name__}: {exc}"[:200],
                    )
                )
                await asyncio.sleep(0.02)  # the server may be gone: do not spin

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return record


def acked_messages(attempts: list[Attempt]) -> set[str]:
    return {m for a in attempts for m in a.acked}


async def stored_messages(database_url: str, slug: str) -> set[str]:
    """The messages of every heartbeat of ``slug`` stored in the database, read directly."""
    from sqlalchemy import select

    from medic_core.store import Database
    from medic_core.store.models import Heartbeat, Service

    db = Database(database_url)
    try:
        async with db.sessions() as session:
            rows = await session.scalars(
                select(Heartbeat.message)
                .join(Service, Service.id == Heartbeat.service_id)
                .where(Service.slug == slug)
            )
            return {m for m in rows if m is not None}
    finally:
        await db.close()


def fresh_postgres_url(pg_cluster: Any, prefix: str = "e2e") -> str:
    """A PostgreSQL database for one test, not shared with the rest of the session.

    With the session cluster (``pg_cluster`` fixture) it is a new, empty database (the server
    migrates it on start). When ``pg_cluster`` is None (``MEDIC_TEST_POSTGRES_URL`` names an
    external server) it is that database, migrated and emptied. Call it from a sync fixture.
    """
    if pg_cluster is not None:
        name = f"{prefix}_{secrets.token_hex(4)}"
        pg_cluster.create_database(name)
        return str(pg_cluster.url(name))
    url = os.environ.get("MEDIC_TEST_POSTGRES_URL")
    if not url:
        raise RuntimeError("no PostgreSQL: neither the session cluster nor MEDIC_TEST_POSTGRES_URL")

    async def reset() -> None:
        from sqlalchemy import text

        from medic_core.store import Database
        from medic_core.store.migrate import upgrade
        from medic_core.store.models import Base

        db = Database(url)
        try:
            await upgrade(db)
            async with db.engine.begin() as conn:
                tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            await db.close()

    asyncio.run(reset())
    return url
