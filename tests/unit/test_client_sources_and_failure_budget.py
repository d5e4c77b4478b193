"""Who a request is counted as (trusted proxies, X-Forwarded-For, IPv6 /64s) and the budget of
failed authentications per source, with time held still."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medic_core.auth import failures
from medic_core.auth.failures import AuthFailureBudget
from medic_core.auth.gate import AuthGate
from medic_core.net.guard import OutboundPolicy
from medic_core.net.inbound import TrustedProxies, parse_ip, source_of
from medic_core.observability.metrics import Metrics
from medic_core.ratelimit import TokenBuckets

ALB = TrustedProxies.from_setting("10.0.0.0/16, fd00::/8")


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the client's address ------------------------------------------------------------------------


def test_without_trusted_proxies_the_peer_is_the_client_whatever_it_forwards() -> None:
    nobody = TrustedProxies()
    assert nobody.client_address("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"


def test_an_untrusted_peer_cannot_move_itself_with_x_forwarded_for() -> None:
    assert ALB.client_address("198.51.100.7", ["10.0.0.5, 203.0.113.9"]) == "198.51.100.7"


def test_behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() -> None:
    # The client wrote "1.1.1.1"; the ALB appended the address it saw, 203.0.113.9.
    assert ALB.client_address("10.0.3.4", ["1.1.1.1, 203.0.113.9"]) == "203.0.113.9"
    # Two trusted hops (an internal proxy behind the ALB), and headers split over two lines.
    assert ALB.client_address("10.0.3.4", ["1.1.1.1, 203.0.113.9", "10.0.9.9"]) == "203.0.113.9"
    # Every hop trusted: the leftmost one is as far as anyone can see.
    assert ALB.client_address("10.0.3.4", ["10.0.1.1, 10.0.2.2"]) == "10.0.1.1"
    # No header at all: the proxy itself.
    assert ALB.client_address("10.0.3.4", []) == "10.0.3.4"


def test_a_forwarded_entry_that_is_no_address_stops_at_the_proxy_that_passed_it() -> None:
    assert ALB.client_address("10.0.3.4", ["203.0.113.9, unknown"]) == "10.0.3.4"
    assert ALB.client_address("10.0.3.4", ["203.0.113.9:4711"]) == "203.0.113.9"
    assert ALB.client_address("10.0.3.4", ["[2001:db8::1]:443"]) == "2001:db8::1"


@given(
    spoofed=st.lists(st.ip_addresses().map(str), max_size=5),
    client=st.ip_addresses(v=4).filter(lambda ip: ip not in ipaddress.ip_network("10.0.0.0/16")),
)
def test_whatever_a_client_prepends_it_is_counted_as_the_address_the_proxy_saw(
    spoofed: list[str], client: ipaddress.IPv4Address
) -> None:
    header = ", ".join([*spoofed, str(client)])
    assert ALB.client_address("10.0.7.7", [header]) == str(client)


def test_sources_are_ipv4_addresses_and_ipv6_slash_64s() -> None:
    assert source_of("192.0.2.1") == "192.0.2.1"
    assert source_of("::ffff:192.0.2.1") == "192.0.2.1"  # a dual-stack socket's IPv4 peer
    assert source_of("2001:db8:1:2:aaaa::1") == source_of("2001:db8:1:2:bbbb::2")
    assert source_of("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of(None) == source_of("not an address") == "unknown"
    assert parse_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


@pytest.mark.parametrize(
    ("value", "hint"),
    [("10.0.0.1/16", "did you mean 10.0.0.0/16"), ("alb.internal", "address/prefix")],
)
def test_a_bad_trusted_proxy_entry_stops_medic_naming_the_setting(value: str, hint: str) -> None:
    with pytest.raises(ValueError, match="MEDIC_TRUSTED_PROXIES") as info:
        TrustedProxies.from_setting(value)
    assert hint in str(info.value)
    # The outbound allow-list parses its networks with the same function.
    with pytest.raises(ValueError, match="MEDIC_OUTBOUND_ALLOW_NETWORKS"):
        OutboundPolicy.from_strings("", value)


# -- token buckets and the failure budget -------------------------------------------------------


def test_a_bounded_bucket_table_forgets_the_least_recently_used_key() -> None:
    time = Monotonic()
    buckets = TokenBuckets[str](1.0, 2, max_keys=3, monotonic=time)
    for key in ("a", "b", "c"):
        buckets.spend(key, 2)
    assert not buckets.peek("a").allowed
    buckets.spend("d")  # a fourth key: "b", used least recently ("a" was just peeked), goes
    assert len(buckets) == 3
    assert buckets.peek("b").allowed and buckets.peek("b").remaining == 2  # forgotten = full
    assert not buckets.peek("a").allowed and not buckets.peek("c").allowed


def test_peek_takes_nothing_and_creates_no_bucket() -> None:
    buckets = TokenBuckets[str](1.0, 2, monotonic=Monotonic())
    assert buckets.peek("x").allowed and buckets.peek("x").allowed
    assert len(buckets) == 0


def test_the_failure_budget_refuses_a_source_after_its_burst_until_it_refills() -> None:
    time = Monotonic()
    budget = AuthFailureBudget(0.5, 3, max_sources=100, monotonic=time)
    for _ in range(3):
        assert budget.refusal("198.51.100.7") is None
        budget.charge("198.51.100.7")
    wait = budget.refusal("198.51.100.7")
    assert wait == pytest.approx(2.0)  # one failure regained every 2 s
    assert budget.refusal("198.51.100.8") is None  # per source
    time.now += 2.0
    assert budget.refusal("198.51.100.7") is None
    budget.charge("198.51.100.7")
    assert budget.refusal("198.51.100.7") is not None


def test_the_failure_budget_remembers_at_most_max_sources() -> None:
    budget = AuthFailureBudget(1.0, 1, max_sources=10, monotonic=Monotonic())
    for n in range(1000):
        budget.charge(f"192.0.2.{n % 250}/{n}")
    assert len(budget) == 10


def test_a_zero_rate_turns_the_failure_budget_off() -> None:
    budget = AuthFailureBudget(0.0, 1, max_sources=10)
    for _ in range(5):
        budget.charge("198.51.100.7")
    assert budget.refusal("198.51.100.7") is None
    assert len(budget) == 0


async def test_a_refusal_is_held_for_the_delay_then_says_how_long_to_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(failures.asyncio, "sleep", sleep)
    time = Monotonic()
    budget = AuthFailureBudget(0.25, 1, max_sources=10, delay=1.0, monotonic=time)
    budget.charge("198.51.100.7")
    assert await budget.hold("198.51.100.7") == pytest.approx(4.0)
    assert len(slept) == 1 and 0.5 <= slept[0] <= 1.5  # spread, so refused floods come apart
    time.now += 3.9
    assert await budget.hold("198.51.100.7") == 1.0  # Retry-After is never below a second


class FakeKeys:
    """Stands in for ApiKeys: every authentication starts a query that ``outcome`` decides."""

    def __init__(self) -> None:
        self.outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def verified(self, token: str) -> None:
        return None

    async def authenticate(self, token: str, *, before_query: Any) -> Any:
        before_query()
        await self.outcome
        raise AssertionError("not reached in these tests")


async def test_a_lookup_abandoned_by_its_client_keeps_its_token_spent() -> None:
    # Or a client could open a call, hang up at once, and make every query free.
    budget = AuthFailureBudget(0.001, 1, max_sources=10)
    gate = AuthGate(FakeKeys(), budget, Metrics())  # type: ignore[arg-type]
    task = asyncio.create_task(
        gate.authenticate("medic_x_y", "198.51.100.7", transport="grpc", missing="no key")
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.refusal("198.51.100.7") is not None


async def test_a_lookup_the_database_failed_gives_its_token_back() -> None:
    budget = AuthFailureBudget(0.001, 1, max_sources=10)
    keys = FakeKeys()
    gate = AuthGate(keys, budget, Metrics())  # type: ignore[arg-type]
    task = asyncio.create_task(
        gate.authenticate("medic_x_y", "198.51.100.7", transport="http", missing="no key")
    )
    await asyncio.sleep(0)
    keys.outcome.set_exception(ConnectionRefusedError("database down"))
    with pytest.raises(ConnectionRefusedError):
        await task
    assert budget.refusal("198.51.100.7") is None
