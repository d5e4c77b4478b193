"""Pre-authentication load: what 2,000 clients with unknown keys do to everyone else.

For each mode (``off``: the pre-auth protection turned off through settings; ``on``: the
defaults; ``on-hold-1s``: the defaults with refusals held 1 s instead of 3 s) it starts a fresh
``medic serve`` on a fresh SQLite database, registers a service and the legitimate clients'
keys, and then:

1. **quiet**: ``--legit`` writers (``POST /api/v1/heartbeats``, a heartbeat key: one commit
   each) and as many readers (``GET /api/v1/services/<slug>``, a read key: one query each), from
   127.0.0.200 up, each send one request every ``--interval`` seconds on a kept-alive
   connection, for ``--quiet`` seconds; every request's latency is recorded.
2. **attack**: the same legitimate clients again, for ``--duration`` seconds, while
   ``--attackers`` connections (spread over ``--attacker-sources`` addresses 127.0.1.x, in
   ``--attacker-procs`` processes) each send ``GET /api/v1/services`` with a fresh, never-seen
   key id per request, back to back (closed loop, ignoring ``Retry-After``: the worst case), and
   ``--idle`` connections that send nothing plus ``--slow`` connections that send a request head
   one byte per ``--slow-interval`` seconds (sources 127.0.2.x) record how long the server keeps
   them open (observed for at most ``--observe`` seconds).

Reported per mode and kind of client: p50/p99/max latency and errors, quiet and under attack
(nearest-rank over the requests after ``--warmup`` seconds of the attack; the JSON adds the
worst latency of every second, and the server's own histogram of the heartbeat route); the
attackers' answers by status; the key lookups that reached the database and the pre-auth
counters (from /metrics); how long idle and slow-header connections stayed open; the server's
CPU; the 1-minute load average before and after (the machine is shared: read the latencies next
to it). Results: a table on stdout and JSON under bench/results/.

Everything runs on loopback; every client loop is bounded by its deadline and a request count.
With ``--pin`` the server (every thread) runs on CPU 0 and the load generators and the measuring
clients on the others, as when the attack comes from elsewhere: without it they all share the
machine's cores, and the attackers' own CPU shows up in everyone's latency.

    .venv/bin/python bench/preauth/run.py
    .venv/bin/python bench/preauth/run.py --modes off,on,on-hold-1s --duration 30
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import Server, cpu_seconds, database, machine, percentile, table, write_results

# ``off`` turns each protection off through its setting (the budget and the negative cache) or
# sets it beyond reach (caps, timeouts: aiohttp's own keep-alive default was 3,630 s), which is
# how the server behaved before they existed. ``on`` is the shipped defaults.
MODES: dict[str, dict[str, str]] = {
    "off": {
        "MEDIC_AUTH_FAILURE_RATE": "0",
        "MEDIC_KEY_NEGATIVE_CACHE_TTL": "0",
        "MEDIC_HTTP_MAX_CONNECTIONS": "1000000",
        "MEDIC_HTTP_MAX_CONNECTIONS_PER_SOURCE": "1000000",
        "MEDIC_HTTP_HEADER_TIMEOUT": "3630",
        "MEDIC_HTTP_IDLE_TIMEOUT": "3630",
    },
    "on": {},
    # The defaults, but refusals held for 1 s instead of 3 s: what the hold buys.
    "on-hold-1s": {"MEDIC_AUTH_FAILURE_DELAY": "1"},
}
SERVICE = "bench-preauth"


# -- the clients (each role runs in its own process) -------------------------------------------


async def read_answer(reader: asyncio.StreamReader) -> int:
    """Read one response (head and Content-Length body); return its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def attacker(
    port: int, source: str, prefix: str, deadline: float, max_requests: int, counts: Counter[str]
) -> None:
    sent = 0
    while time.monotonic() < deadline and sent < max_requests:
        try:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, local_addr=(source, 0)
            )
        except OSError:
            counts["connect_error"] += 1
            await asyncio.sleep(0.05)
            continue
        try:
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                token = f"medic_{prefix}{sent:06x}_{'x' * 43}".encode()  # never seen before
                writer.write(
                    b"GET /api/v1/services HTTP/1.1\r\nHost: medic\r\nAuthorization: Bearer "
                    + token
                    + b"\r\n\r\n"
                )
                counts[str(await read_answer(reader))] += 1
        except (ConnectionError, asyncio.IncompleteReadError):
            counts["closed"] += 1
        finally:
            writer.close()


def run_attackers(
    port: int, sources: list[str], connections: int, proc: int, seconds: float, queue: Any
) -> None:
    async def main() -> dict[str, int]:
        counts: Counter[str] = Counter()
        deadline = time.monotonic() + seconds
        await asyncio.gather(
            *(
                attacker(
                    port,
                    sources[n % len(sources)],
                    f"{proc:02x}{n:04x}",
                    deadline,
                    1_000_000,
                    counts,
                )
                for n in range(connections)
            )
        )
        return dict(counts)

    queue.put(("attackers", _run(main())))


def legit_request(kind: str, key: str) -> bytes:
    """``write``: record a heartbeat (a commit); ``read``: read the service (a query)."""
    if kind == "read":
        return (
            f"GET /api/v1/services/{SERVICE} HTTP/1.1\r\nHost: medic\r\n"
            f"Authorization: Bearer {key}\r\n\r\n"
        ).encode()
    body = f'{{"service": "{SERVICE}"}}'.encode()
    return (
        b"POST /api/v1/heartbeats HTTP/1.1\r\nHost: medic\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


async def legit_client(
    port: int, source: str, kind: str, key: str, deadline: float, interval: float
) -> tuple[list[tuple[float, float]], Counter[str]]:
    """(start, latency) of every request, and the answers that were not 2xx."""
    samples: list[tuple[float, float]] = []
    errors: Counter[str] = Counter()
    request = legit_request(kind, key)
    reader = writer = None
    for _ in range(1_000_000):
        now = time.monotonic()
        if now >= deadline:
            break
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(source, 0)
                )
            assert reader is not None
            writer.write(request)
            status = await read_answer(reader)
            samples.append((now, time.perf_counter() - started))
            if not 200 <= status < 300:
                errors[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
        await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))
    if writer is not None:
        writer.close()
    return samples, errors


def run_legit(
    port: int, keys: dict[str, str], clients: int, seconds: float, interval: float, queue: Any
) -> None:
    """``clients`` writers and ``clients`` readers, from 127.0.0.200 up."""

    async def main() -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        kinds = [kind for kind in ("write", "read") for _ in range(clients)]
        results = await asyncio.gather(
            *(
                legit_client(port, f"127.0.0.{200 + n}", kind, keys[kind], deadline, interval)
                for n, kind in enumerate(kinds)
            )
        )
        out: dict[str, Any] = {}
        for kind, (samples, errors) in zip(kinds, results, strict=True):
            entry = out.setdefault(kind, {"samples": [], "errors": Counter()})
            entry["samples"].extend(samples)
            entry["errors"].update(errors)
        return {k: {"samples": v["samples"], "errors": dict(v["errors"])} for k, v in out.items()}

    queue.put(("legit", _run(main())))


async def lingerer(port: int, source: str, slow: bool, interval: float, observe: float) -> float:
    """Seconds until the server closed the connection (``observe`` if it never did)."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    head = b"GET /health HTTP/1.1\r\nHost: medic\r\nX-Slow: " + b"a" * 100_000

    async def dribble() -> None:
        for byte in head:
            writer.write(bytes([byte]))
            await asyncio.sleep(interval)

    sender = asyncio.create_task(dribble()) if slow else None
    try:
        async with asyncio.timeout(observe):
            while await reader.read(65536):
                pass
    except TimeoutError:
        pass
    except ConnectionError:
        pass
    finally:
        if sender is not None:
            sender.cancel()
        writer.close()
    return min(observe, time.monotonic() - started)


def run_lingerers(
    port: int, idle: int, slow: int, interval: float, observe: float, queue: Any
) -> None:
    async def main() -> dict[str, list[float]]:
        sources = [f"127.0.2.{1 + n % 200}" for n in range(idle + slow)]
        idle_times = asyncio.gather(
            *(lingerer(port, sources[n], False, interval, observe) for n in range(idle))
        )
        slow_times = asyncio.gather(
            *(lingerer(port, sources[idle + n], True, interval, observe) for n in range(slow))
        )
        a, b = await asyncio.gather(idle_times, slow_times)
        return {"idle": list(a), "slow": list(b)}

    queue.put(("lingerers", _run(main())))


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


# -- one mode ----------------------------------------------------------------------------------


def prepare(server: Server) -> dict[str, str]:
    """The service, and the legitimate clients' keys: kind -> token."""
    server.request(
        "POST",
        "/api/v1/services",
        {"slug": SERVICE, "expectation": {"kind": "interval", "period": 3600}},
    )
    keys = {}
    for kind, scope in (("write", "heartbeat"), ("read", "read")):
        key = server.request("POST", "/api/v1/api-keys", {"name": kind, "scopes": [scope]})
        keys[kind] = str(key["token"])
    return keys


def labelled_metrics(server: Server) -> dict[str, float]:
    """Every sample of the server's /metrics whose name starts with medic_ (with labels)."""
    with urllib.request.urlopen(f"{server.base}/metrics", timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        heartbeat_route = 'route="/api/v1/heartbeats"' in line and "_bucket" in line
        if heartbeat_route or line.startswith(
            ("medic_api_key", "medic_auth", "medic_preauth", "medic_http_conn")
        ):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def latency_summary(samples: list[tuple[float, float]], since: float) -> dict[str, Any]:
    values = sorted(latency for start, latency in samples if start >= since)
    if not values:
        return {"requests": 0}
    return {
        "requests": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def timeline(samples: list[tuple[float, float]]) -> list[dict[str, Any]]:
    """The legitimate clients' requests and worst latency per second of the run."""
    if not samples:
        return []
    first = min(start for start, _ in samples)
    seconds: dict[int, list[float]] = {}
    for start, latency in samples:
        seconds.setdefault(int(start - first), []).append(latency)
    return [
        {"second": n, "requests": len(v), "max_ms": round(max(v) * 1000, 1)}
        for n, v in sorted(seconds.items())
    ]


def spread(values: list[float], observe: float) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {}
    return {
        "count": len(ordered),
        "min_s": round(ordered[0], 1),
        "p50_s": round(percentile(ordered, 50), 1),
        "max_s": round(ordered[-1], 1),
        "still_open_at_end": sum(1 for v in ordered if v >= observe - 0.05),
    }


def pin(server_pid: int) -> None:
    """The server's threads on CPU 0 (threads it starts later inherit it), this process and the
    clients it forks from now on on the other CPUs."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--pin needs at least 2 CPUs")
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpus[0]})
    os.sched_setaffinity(0, set(cpus[1:]))


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    with database("sqlite", keep=args.keep) as target:
        server = Server(
            target.fresh_url(f"preauth-{mode}"),
            target.workdir / f"logs-{mode}",
            env_extra=MODES[mode],
        )
        server.start()
        if args.pin:
            pin(server.pid)
        result: dict[str, Any] = {"mode": mode, "settings": MODES[mode], "pinned": args.pin}
        try:
            keys = prepare(server)

            result["load_before_quiet"] = os.getloadavg()[0]
            queue = ctx.Queue()
            quiet = ctx.Process(
                target=run_legit,
                args=(server.port, keys, args.legit, args.quiet, args.interval, queue),
            )
            quiet.start()
            _, quiet_result = queue.get(timeout=args.quiet + 60)
            quiet.join(30)
            result["quiet"] = {
                kind: {**latency_summary(v["samples"], 0.0), "errors": v["errors"]}
                for kind, v in quiet_result.items()
            }

            result["load_before_attack"] = os.getloadavg()[0]
            before = labelled_metrics(server)
            cpu_before = cpu_seconds([server.pid])
            started = time.monotonic()
            sources = [f"127.0.1.{1 + n}" for n in range(args.attacker_sources)]
            per_proc = -(-args.attackers // args.attacker_procs)
            procs = [
                ctx.Process(
                    target=run_attackers,
                    args=(
                        server.port,
                        sources,
                        min(per_proc, args.attackers - p * per_proc),
                        p,
                        args.duration,
                        queue,
                    ),
                )
                for p in range(args.attacker_procs)
            ]
            procs.append(
                ctx.Process(
                    target=run_legit,
                    args=(server.port, keys, args.legit, args.duration, args.interval, queue),
                )
            )
            procs.append(
                ctx.Process(
                    target=run_lingerers,
                    args=(
                        server.port,
                        args.idle,
                        args.slow,
                        args.slow_interval,
                        min(args.observe, args.duration),
                        queue,
                    ),
                )
            )
            for proc in procs:
                proc.start()
            collected: dict[str, list[Any]] = {}
            for _ in procs:
                role, value = queue.get(timeout=args.duration + 120)
                collected.setdefault(role, []).append(value)
            for proc in procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()
            elapsed = time.monotonic() - started
            cpu = cpu_seconds([server.pid]) - cpu_before
            after = labelled_metrics(server)
            result["load_after_attack"] = os.getloadavg()[0]

            attackers: Counter[str] = Counter()
            for counts in collected.get("attackers", []):
                attackers.update(counts)
            legit = collected["legit"][0]
            lingering = collected["lingerers"][0]
            first = min((s for v in legit.values() for s, _ in v["samples"]), default=0.0)
            result["attack"] = {
                kind: {
                    **latency_summary(v["samples"], first + args.warmup),
                    "errors": v["errors"],
                    "timeline": timeline(v["samples"]),
                }
                for kind, v in legit.items()
            }
            result["attackers"] = {
                "answers": dict(attackers),
                "requests_per_s": round(
                    sum(v for k, v in attackers.items() if k.isdigit()) / elapsed
                ),
            }
            result["idle_open"] = spread(lingering["idle"], min(args.observe, args.duration))
            result["slow_open"] = spread(lingering["slow"], min(args.observe, args.duration))
            result["server_cpu_pct"] = round(100 * cpu / elapsed)
            result["metrics_delta"] = {
                name: after[name] - before.get(name, 0.0)
                for name in after
                if after[name] != before.get(name, 0.0)
            }
        finally:
            result["server_exit"] = server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="off,on")
    parser.add_argument("--attackers", type=int, default=2000)
    parser.add_argument("--attacker-sources", type=int, default=50)
    parser.add_argument("--attacker-procs", type=int, default=2)
    parser.add_argument("--legit", type=int, default=2, help="clients of each kind")
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--idle", type=int, default=100)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--slow-interval", type=float, default=1.0)
    parser.add_argument("--observe", type=float, default=30.0)
    parser.add_argument("--quiet", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument(
        "--pin", action="store_true", help="server on CPU 0, load generators on the others"
    )
    args = parser.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * (args.attackers + args.idle + args.slow + 2 * args.legit) + 1024
    if soft < needed:  # the server inherits it
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, needed), hard))

    results = [run_mode(mode, args) for mode in args.modes.split(",")]
    rows = []
    for r in results:
        lookups = sum(
            v for k, v in r["metrics_delta"].items() if "lookups_total" in k and "query" in k
        )
        for kind in ("write", "read"):
            quiet, attack = r["quiet"][kind], r["attack"][kind]
            rows.append(
                {
                    "mode": r["mode"],
                    "client": kind,
                    "quiet p50/p99 ms": f"{quiet.get('p50_ms')}/{quiet.get('p99_ms')}",
                    "attack p50/p99/max ms": (
                        f"{attack.get('p50_ms')}/{attack.get('p99_ms')}/{attack.get('max_ms')}"
                    ),
                    "requests/errors": (
                        f"{attack.get('requests')}/{sum(attack['errors'].values())}"
                    ),
                    "attacker req/s": r["attackers"]["requests_per_s"],
                    "key queries": int(lookups),
                    "idle open p50/max s": (
                        f"{r['idle_open'].get('p50_s')}/{r['idle_open'].get('max_s')}"
                    ),
                    "slow open p50/max s": (
                        f"{r['slow_open'].get('p50_s')}/{r['slow_open'].get('max_s')}"
                    ),
                    "server cpu %": r["server_cpu_pct"],
                    "load 1m": f"{r['load_before_attack']:.1f}->{r['load_after_attack']:.1f}",
                }
            )
    print(table(rows, list(rows[0])))
    path = write_results("preauth", {"machine": machine(), "args": vars(args), "results": results})
    print(f"\nresults: {path}")


if __name__ == "__main__":
    main()
