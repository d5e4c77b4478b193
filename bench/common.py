"""What the benchmarks share: a fresh database, the real server process, machine facts, output.

Nothing here is a test. Every loop is bounded in count and in time, and every server listens on
127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "tests"))  # support.postgres (the private PostgreSQL cluster)

from support.postgres import PgCluster, find_bin_dir, free_port  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the database ------------------------------------------------------------------------------


@dataclass
class Target:
    """One database to run against: ``sqlite`` (a file in a temp dir) or ``postgresql``."""

    kind: str
    workdir: Path
    cluster: PgCluster | None = None
    _n: int = 0

    def fresh_url(self, label: str) -> str:
        """A URL for an empty database nobody has used yet."""
        self._n += 1
        if self.kind == "sqlite":
            path = self.workdir / f"{label}-{self._n}" / "medic.db"
            path.parent.mkdir(parents=True)
            return f"sqlite:///{path}"
        assert self.cluster is not None
        name = f"{label.replace('-', '_')}_{self._n}"
        self.cluster.create_database(name)
        return self.cluster.url(name)

    def postgres_cpu(self) -> float | None:
        """CPU seconds used so far by PostgreSQL (postmaster and all its backends, live or
        exited); None for SQLite."""
        if self.cluster is None:
            return None
        pid_file = self.cluster.data / "postmaster.pid"
        try:
            master = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return tree_cpu_seconds(master)


@contextmanager
def database(kind: str, keep: bool = False) -> Iterator[Target]:
    workdir = Path(tempfile.mkdtemp(prefix=f"medic-bench-{kind}-"))
    cluster = None
    try:
        if kind == "postgresql":
            cluster = PgCluster()  # its own temp dir, which the postgres user can enter
            cluster.init()
            cluster.start()
        yield Target(kind, workdir, cluster)
    finally:
        if cluster is not None:
            cluster.destroy()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def migrate(url: str) -> None:
    from medic_core.store import Database
    from medic_core.store.migrate import upgrade

    async def run() -> None:
        db = Database(url)
        try:
            await upgrade(db)
        finally:
            await db.close()

    asyncio.run(run())


# -- the server process ------------------------------------------------------------------------


def admin_token() -> str:
    return f"medic_bench{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"


_SERVE = "from medic_core.cli import main; main(['serve'])"
LOOPS = {
    # Hide uvloop, so `medic serve` falls back to the standard asyncio loop.
    "asyncio": f"import sys; sys.modules['uvloop'] = None; {_SERVE}",
    "uvloop": f"import uvloop; uvloop.install(); {_SERVE}",
}


@dataclass
class Server:
    """``medic serve`` as a child process on a free loopback port."""

    url: str  # database URL
    logdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    port: int = 0
    token: str = field(default_factory=admin_token)
    # "default": `medic serve` as shipped (uvloop when installed); "asyncio" or "uvloop" force
    # that event loop (to measure what uvloop buys, or to compare with older trees).
    loop: str = "default"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0, *, same_port: bool = False) -> None:
        """Start and wait until ``/health`` answers; ``same_port``: on the port of the last
        start (a restart that clients find again), else on a free one."""
        if not (same_port and self.port):
            self.port = free_port()
        env = {
            **os.environ,
            "MEDIC_DATABASE_URL": self.url,
            "MEDIC_DATA_DIR": str(self.logdir),
            "MEDIC_HOST": "127.0.0.1",
            "MEDIC_PORT": str(self.port),
            "MEDIC_ADMIN_KEY": self.token,
            "MEDIC_RATE_LIMIT": "0",
            "MEDIC_LOG_LEVEL": "WARNING",
            **self.env_extra,
        }
        self.logdir.mkdir(parents=True, exist_ok=True)
        log = (self.logdir / "server.log").open("ab")
        cmd = [str(VENV_BIN / "medic"), "serve"]
        if self.loop in LOOPS:
            cmd = [str(VENV_BIN / "python"), "-c", LOOPS[self.loop]]
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd=self.logdir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early; see {self.logdir / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.base}/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /health in {timeout}s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (the writer drains its queue), then wait; SIGKILL only if it hangs."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
        return json.loads(text) if text and text[:1] in b"{[" else text

    def metrics(self) -> dict[str, float]:
        """The server's Prometheus samples, summed over labels (name -> value)."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                continue
        return out


# -- CPU accounting ----------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    kids = [int(p) for p in text.split()]
    return kids + [g for k in kids for g in children(k)]


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def tree_cpu_seconds(root: int) -> float:
    """CPU of a process tree: every live process's own time plus what each has reaped from
    children that exited (cutime + cstime), so backends that come and go are still counted."""
    total = 0
    for pid in (root, *children(root)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLK_TCK


# -- reporting ---------------------------------------------------------------------------------


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else ""


def machine() -> dict[str, Any]:
    import sqlite3

    import aiohttp
    import sqlalchemy

    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    cpu = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lscpu.splitlines())}
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kb = int(next(ln for ln in meminfo if ln.startswith("MemTotal")).split()[1])
    try:
        postgres = _first_line([str(find_bin_dir() / "postgres"), "--version"])
    except RuntimeError:
        postgres = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu.get("Model name", platform.processor()),
        "hypervisor": cpu.get("Hypervisor vendor"),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres,
        "aiohttp": aiohttp.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "wrk": _first_line(["wrk", "-v"]),
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = [
        " | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
        "-|-".join("-" * w for w in widths),
    ]
    lines += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an already sorted sequence."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(p / 100 * len(sorted_values))))
    return sorted_values[rank - 1]
