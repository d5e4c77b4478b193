"""Before any key is checked: the budget of failed authentications per source, and the caches
that keep unknown and wrong keys off the database -- attacked over HTTP and gRPC.

Sources on one machine: a client bound to 127.0.0.2 reaches a server on 127.0.0.1 from another
address; behind ``MEDIC_TRUSTED_PROXIES`` the source is read from ``X-Forwarded-For``. Database
lookups are counted at the driver (every statement that reads ``api_keys``).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import event

from conftest import auth, make_settings
from medic_core.app import Medic
from medic_core.audit import Actor
from medic_core.auth import ApiKeys
from medic_core.clock import FakeClock
from medic_core.errors import Unauthorized
from medic_core.observability.metrics import Metrics
from medic_core.server.grpc.proto import agent_pb2, agent_pb2_grpc
from support.http_port import client_from, listening, open_from, read_response
from support.postgres import free_port

ME = Actor("test")
PROBLEM = "application/problem+json"

Serve = Callable[..., AbstractAsyncContextManager[tuple[Medic, str, str]]]


def unknown_token() -> str:
    return f"medic_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


@pytest.fixture
def serve(db_url: str, tmp_path: Path, clock: FakeClock) -> Serve:
    @asynccontextmanager
    async def run(**settings: Any) -> AsyncIterator[tuple[Medic, str, str]]:
        values = {
            "auth_failure_burst": 5,
            "auth_failure_rate": 0.001,
            "auth_failure_delay": 0.0,  # the hold is proven in the unit tests, without waiting
            **settings,
        }
        medic = Medic(make_settings(db_url, tmp_path, **values), clock=clock)
        await medic.start(monitor=False)
        try:
            token = await medic.ensure_admin_key()
            assert token is not None
            async with listening(medic) as url:
                yield medic, url, token
        finally:
            await medic.stop()

    return run


@contextmanager
def key_queries(medic: Medic) -> Iterator[list[str]]:
    """Every statement sent to the database that reads the api_keys table, while open."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            seen.append(statement)

    engine = medic.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def sample(medic: Medic, name: str, **labels: str) -> float:
    return medic.metrics.registry.get_sample_value(name, labels) or 0.0


async def get_services(url: str, token: str, source: str = "127.0.0.1", **headers: str) -> Any:
    async with client_from(source) as session:
        response = await session.get(f"{url}/api/v1/services", headers={**auth(token), **headers})
        body = await response.read()
        return response.status, response.headers, body


# -- the budget of failed authentications, over HTTP ---------------------------------------------


async def test_a_source_sending_unknown_keys_is_refused_after_its_budget_and_others_are_not(
    serve: Serve,
) -> None:
    async with serve() as (medic, url, admin):
        for _ in range(5):
            assert (await get_services(url, unknown_token()))[0] == 401
        with key_queries(medic) as queries:
            status, headers, body = await get_services(url, unknown_token())
            assert status == 429
            assert headers["Content-Type"] == PROBLEM and int(headers["Retry-After"]) >= 1
            assert b"too many failed authentications" in body
            # Even a valid key from that source waits: proving it would take a lookup (the
            # verified-key cache is off here), and no lookup is made.
            assert (await get_services(url, admin))[0] == 429
        assert queries == []
        # Another source is untouched, with a valid key and with a bad one (its own budget).
        assert (await get_services(url, admin, "127.0.0.2"))[0] == 200
        assert (await get_services(url, unknown_token(), "127.0.0.2"))[0] == 401
        assert (
            sample(medic, "medic_preauth_refusals_total", transport="http", reason="source_budget")
            == 2
        )
        assert sample(medic, "medic_auth_failures_total", transport="http") == 6


async def test_concurrent_requests_of_one_source_start_at_most_its_budget_of_lookups(
    serve: Serve,
) -> None:
    # Checking the budget and charging it only after a failed lookup would let every request
    # already in flight through: a token is reserved before each query instead.
    async with serve() as (medic, url, _admin):
        with key_queries(medic) as queries:
            answers = await asyncio.gather(*(get_services(url, unknown_token()) for _ in range(40)))
        assert len(queries) <= 5
        assert sorted({status for status, _, _ in answers}) == [401, 429]


async def test_many_concurrent_requests_with_one_valid_key_pass_a_small_budget(
    serve: Serve,
) -> None:
    # Heavy ingest from one address: requests that join a lookup under way take no token,
    # and a lookup that finds a valid key gives its token back.
    async with serve(auth_failure_burst=1) as (_medic, url, admin):
        for _ in range(3):
            answers = await asyncio.gather(*(get_services(url, admin) for _ in range(50)))
            assert {status for status, _, _ in answers} == {200}


async def test_requests_without_a_key_and_with_malformed_keys_spend_the_budget_too(
    serve: Serve,
) -> None:
    async with (
        serve(auth_failure_burst=3) as (_medic, url, _admin),
        client_from("127.0.0.1") as session,
    ):
        for headers in ({}, {"Authorization": "Basic dXNlcjpwYXNz"}, auth("not-a-key")):
            response = await session.get(f"{url}/api/v1/services", headers=headers)
            assert response.status == 401
        response = await session.get(f"{url}/api/v1/services")
        assert response.status == 429
        # Public routes need no key and are not limited.
        assert (await session.get(f"{url}/health")).status == 200


async def test_a_key_this_process_verified_passes_while_its_source_is_over_budget(
    serve: Serve,
) -> None:
    # One misconfigured host behind a NAT must not lock out the NAT's working clients.
    async with serve(key_cache_ttl=60.0) as (medic, url, admin):
        assert (await get_services(url, admin))[0] == 200  # verified and cached
        for _ in range(5):
            assert (await get_services(url, unknown_token()))[0] == 401
        with key_queries(medic) as queries:
            assert (await get_services(url, admin))[0] == 200
            # The cached key id with a wrong secret proves nothing: refused, still no query.
            wrong = admin[:-4] + ("AAAA" if not admin.endswith("AAAA") else "BBBB")
            assert (await get_services(url, wrong))[0] == 429
            assert (await get_services(url, unknown_token()))[0] == 429
        assert queries == []


async def test_x_forwarded_for_from_an_untrusted_peer_does_not_move_it_to_another_bucket(
    serve: Serve,
) -> None:
    async with serve() as (_medic, url, _admin):
        for n in range(5):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (await get_services(url, unknown_token(), **spoofed))[0] == 401
        for n in range(5, 10):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}"}
            assert (await get_services(url, unknown_token(), **spoofed))[0] == 429


async def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget(
    serve: Serve,
) -> None:
    async with serve(trusted_proxies="127.0.0.1/32") as (_medic, url, admin):
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        for _ in range(5):
            assert (await get_services(url, unknown_token(), **attacker))[0] == 401
        assert (await get_services(url, unknown_token(), **attacker))[0] == 429
        # Another client behind the same proxy is not affected...
        other = {"X-Forwarded-For": "203.0.113.7"}
        assert (await get_services(url, admin, **other))[0] == 200
        # ...and the attacker cannot pose as it: what the proxy appended is what counts.
        posing = {"X-Forwarded-For": "203.0.113.7, 203.0.113.66"}
        assert (await get_services(url, unknown_token(), **posing))[0] == 429


async def test_heartbeats_record_the_forwarded_client_as_their_source(serve: Serve) -> None:
    async with serve(trusted_proxies="127.0.0.1/32") as (medic, url, admin):
        await medic.services.create(
            {"slug": "svc", "expectation": {"kind": "interval", "period": 60}}, actor=ME
        )
        async with client_from("127.0.0.1") as session:
            response = await session.post(
                f"{url}/api/v1/heartbeats",
                json={"service": "svc"},
                headers={**auth(admin), "X-Forwarded-For": "1.2.3.4, 198.51.100.23"},
            )
            assert response.status == 201, await response.text()
            history = await session.get(
                f"{url}/api/v1/services/svc/heartbeats", headers=auth(admin)
            )
            [stored] = (await history.json())["items"]
            assert stored["source"] == "198.51.100.23"


async def raw_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, token: str, **headers: str
) -> int:
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"GET /api/v1/services HTTP/1.1\r\nHost: medic\r\nAuthorization: Bearer {token}\r\n"
        f"{extra}\r\n".encode()
    )
    async with asyncio.timeout(10):
        return (await read_response(reader))[0]


async def test_a_refusal_is_held_and_its_connection_kept(serve: Serve) -> None:
    # Behind a proxy the connection carries other clients too: the refusal waits
    # (MEDIC_AUTH_FAILURE_DELAY, to slow clients that ignore Retry-After), the connection stays.
    async with serve(trusted_proxies="127.0.0.1/32", auth_failure_delay=0.2) as (
        _medic,
        url,
        admin,
    ):
        attacker = {"X-Forwarded-For": "203.0.113.66"}
        for _ in range(5):
            assert (await get_services(url, unknown_token(), **attacker))[0] == 401
        reader, writer = await open_from(url)
        assert await raw_get(reader, writer, unknown_token(), **attacker) == 429
        assert await raw_get(reader, writer, admin, **{"X-Forwarded-For": "203.0.113.7"}) == 200
        writer.close()


# -- the key caches -------------------------------------------------------------------------------


async def test_the_database_is_asked_once_for_many_requests_with_the_same_unknown_key_id(
    serve: Serve,
) -> None:
    async with serve(auth_failure_burst=100) as (medic, url, _admin):
        token = unknown_token()
        with key_queries(medic) as queries:
            for _ in range(20):
                assert (await get_services(url, token))[0] == 401
        assert len(queries) == 1
        assert sample(medic, "medic_api_key_lookups_total", result="query") == 1
        assert sample(medic, "medic_api_key_lookups_total", result="negative_hit") == 19


async def test_a_known_key_id_with_a_wrong_secret_costs_no_query_once_the_key_is_cached(
    serve: Serve,
) -> None:
    async with serve(auth_failure_burst=100, key_cache_ttl=60.0) as (medic, url, admin):
        key_id = admin.split("_")[1]
        with key_queries(medic) as queries:
            assert (await get_services(url, admin))[0] == 200
            for _ in range(10):
                wrong = f"medic_{key_id}_{secrets.token_urlsafe(32)}"
                assert (await get_services(url, wrong))[0] == 401
        assert len(queries) == 1
        assert sample(medic, "medic_api_key_lookups_total", result="hit") == 10


async def test_a_key_created_here_is_accepted_at_once_though_its_id_was_just_refused(
    serve: Serve,
) -> None:
    async with serve() as (medic, url, _admin):
        token = unknown_token()
        assert (await get_services(url, token))[0] == 401  # now remembered as unknown
        await medic.keys.create(name="late", scopes=["read"], actor=ME, token=token)
        assert (await get_services(url, token))[0] == 200


class Monotonic:
    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_created_on_another_replica_is_accepted_within_the_negative_ttl(
    medic: Medic, clock: FakeClock
) -> None:
    time = Monotonic()
    here = ApiKeys(medic.db, clock, negative_ttl=10.0, monotonic=time)
    elsewhere = ApiKeys(medic.db, clock)
    token = unknown_token()
    with pytest.raises(Unauthorized):
        await here.authenticate(token)
    await elsewhere.create(name="new", scopes=["read"], actor=ME, token=token)
    time.now += 9.0
    with pytest.raises(Unauthorized):
        await here.authenticate(token)  # still remembered as unknown: the documented delay
    time.now += 1.0
    assert (await here.authenticate(token)).name == "new"


async def test_the_unknown_key_id_cache_is_bounded(medic: Medic, clock: FakeClock) -> None:
    metrics = Metrics()
    keys = ApiKeys(medic.db, clock, negative_size=3, metrics=metrics)
    tokens = [unknown_token() for _ in range(5)]
    for token in tokens:
        with pytest.raises(Unauthorized):
            await keys.authenticate(token)
    for token in (tokens[-1], tokens[0]):  # the last is remembered, the first was forgotten
        with pytest.raises(Unauthorized):
            await keys.authenticate(token)

    def lookups(result: str) -> float:
        return (
            metrics.registry.get_sample_value("medic_api_key_lookups_total", {"result": result})
            or 0.0
        )

    assert lookups("query") == 6
    assert lookups("negative_hit") == 1


async def test_a_revoked_key_is_remembered_as_unknown_and_stays_refused(
    medic: Medic, clock: FakeClock
) -> None:
    keys = ApiKeys(medic.db, clock, cache_ttl=60.0)
    key, token = await keys.create(name="gone", scopes=["read"], actor=ME)
    await keys.authenticate(token)
    await keys.revoke(key.id, actor=ME)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await keys.authenticate(token)


# -- the agent gRPC endpoint -----------------------------------------------------------------------


async def connect_status(port: int, token: str | None) -> tuple[grpc.StatusCode, str]:
    """Open one agent stream with ``token``, send a Hello, and return how the call ended."""
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    hello = agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(
            agent_id="5a0c1f3e-7d2b-4e8a-9c61-0f2d3b4a5c6d",
            hostname="web-1",
            agent_version="0.1.0",
            os="linux",
            arch="x86_64",
        )
    )

    async def messages() -> AsyncIterator[agent_pb2.AgentMessage]:
        yield hello

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = agent_pb2_grpc.AgentServiceStub(channel).Connect(messages(), metadata=metadata)
        try:
            async for message in call:
                if message.WhichOneof("body") == "welcome":
                    call.cancel()
                    return grpc.StatusCode.OK, "welcomed"
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        return await call.code(), await call.details()


async def test_the_agent_endpoint_refuses_a_source_over_budget_before_any_key_lookup(
    serve: Serve,
) -> None:
    async with serve(grpc_port=free_port(), auth_failure_burst=4) as (medic, url, _admin):
        assert medic.agent_endpoint is not None
        port = medic.agent_endpoint.port
        _, agent_key = await medic.keys.create(name="agent", scopes=["agent"], actor=ME)
        # The budget is one per source across both ports: two failures over HTTP...
        for _ in range(2):
            assert (await get_services(url, unknown_token()))[0] == 401
        # ...and two over gRPC use it up.
        for token in (unknown_token(), None):
            assert (await connect_status(port, token))[0] == grpc.StatusCode.UNAUTHENTICATED
        with key_queries(medic) as queries:
            code, details = await connect_status(port, agent_key)
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "too many failed authentications" in details
            assert (await connect_status(port, unknown_token()))[0] == (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )
        assert queries == []
        assert (
            sample(medic, "medic_preauth_refusals_total", transport="grpc", reason="source_budget")
            == 2
        )
        assert sample(medic, "medic_auth_failures_total", transport="grpc") == 2


async def test_the_agent_endpoint_welcomes_a_valid_key_within_the_budget(serve: Serve) -> None:
    async with serve(grpc_port=free_port()) as (medic, _url, _admin):
        assert medic.agent_endpoint is not None
        _, agent_key = await medic.keys.create(name="agent", scopes=["agent"], actor=ME)
        code, _ = await connect_status(medic.agent_endpoint.port, agent_key)
        assert code == grpc.StatusCode.OK
        assert sample(medic, "medic_auth_failures_total", transport="grpc") == 0
