"""The outbound guard: address rules (property-based), URL checks, and connect-time enforcement."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from medic_core.net.guard import (
    BlockedDestination,
    GuardedResolver,
    OutboundPolicy,
    guarded_session,
    retry_after_seconds,
)

# Written out here, not imported from the guard, so the guard's table is what is tested.
REFUSED_NETWORKS = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "::/96",
        "64:ff9b:1::/48",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
]
REFUSED_V4 = [n for n in REFUSED_NETWORKS if n.version == 4]
#: Inside 2000::/3 but special: IETF assignments (Teredo, ORCHID, benchmarking), 6to4, docs.
SPECIAL_V6 = [
    ipaddress.ip_network(n) for n in ("2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20")
]

DEFAULT = OutboundPolicy()


def _inside(address: Any, networks: list[Any]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


refused_addresses = st.sampled_from(REFUSED_NETWORKS).flatmap(
    lambda net: st.ip_addresses(network=net)
)
refused_v4 = st.sampled_from(REFUSED_V4).flatmap(lambda net: st.ip_addresses(network=net))
public_v4 = st.ip_addresses(v=4).filter(lambda a: not _inside(a, REFUSED_V4))
public_v6 = st.ip_addresses(network="2000::/3").filter(lambda a: not _inside(a, SPECIAL_V6))


# -- addresses ---------------------------------------------------------------------------------


@given(refused_addresses)
def test_every_address_in_a_refused_network_is_refused(address: Any) -> None:
    assert DEFAULT.blocked_reason(address) is not None
    assert DEFAULT.blocked_reason(str(address)) is not None


@given(public_v4)
def test_public_ipv4_addresses_are_allowed(address: Any) -> None:
    assert DEFAULT.blocked_reason(address) is None


@given(public_v6)
def test_global_unicast_ipv6_addresses_are_allowed(address: Any) -> None:
    assert DEFAULT.blocked_reason(address) is None


@given(st.ip_addresses(v=6).filter(lambda a: a not in ipaddress.ip_network("2000::/3")))
def test_ipv6_outside_global_unicast_is_refused_unless_it_embeds_a_public_ipv4(
    address: Any,
) -> None:
    embedded = address.ipv4_mapped or (
        ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in ipaddress.ip_network("64:ff9b::/96")
        else None
    )
    if embedded is not None and not _inside(embedded, REFUSED_V4):
        assert DEFAULT.blocked_reason(address) is None
    else:
        assert DEFAULT.blocked_reason(address) is not None


@given(refused_addresses, st.integers(min_value=0, max_value=128))
def test_allow_networks_readmit_refused_addresses(address: Any, prefix: int) -> None:
    prefix = min(prefix, address.max_prefixlen)
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    assert OutboundPolicy(allow_networks=[network]).blocked_reason(address) is None


@given(refused_addresses)
def test_allowing_one_network_does_not_open_the_others(address: Any) -> None:
    other = ipaddress.ip_network("10.20.0.0/16")
    if address.version == 4 and address in other:
        return
    assert OutboundPolicy(allow_networks=[other]).blocked_reason(address) is not None


@given(refused_v4)
def test_ipv6_forms_of_refused_ipv4_addresses_are_refused(address: Any) -> None:
    value = int(address)
    mapped = ipaddress.IPv6Address((0xFFFF << 32) | value)
    compatible = ipaddress.IPv6Address(value)
    nat64 = ipaddress.IPv6Address((0x64FF9B << 96) | value)
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (value << 80) | 1)
    for form in (mapped, compatible, nat64, sixtofour):
        assert DEFAULT.blocked_reason(form) is not None, form
    assert DEFAULT.blocked_reason(f"::ffff:{address}") is not None


@given(public_v4)
def test_ipv6_forms_of_public_ipv4_addresses_follow_the_ipv4_rules(address: Any) -> None:
    value = int(address)
    assert DEFAULT.blocked_reason(ipaddress.IPv6Address((0xFFFF << 32) | value)) is None
    assert DEFAULT.blocked_reason(ipaddress.IPv6Address((0x2002 << 112) | (value << 80))) is None


@given(refused_v4)
def test_teredo_addresses_embedding_a_refused_client_are_refused(address: Any) -> None:
    server = int(ipaddress.IPv4Address("65.54.227.120"))
    client = int(address) ^ 0xFFFFFFFF  # Teredo stores the client address inverted
    teredo = ipaddress.IPv6Address((0x20010000 << 96) | (server << 64) | client)
    assert teredo.teredo == (ipaddress.IPv4Address(server), address)
    assert DEFAULT.blocked_reason(teredo) is not None


def test_named_metadata_and_mapped_addresses_are_refused_with_a_reason() -> None:
    assert "169.254.0.0/16" in (DEFAULT.blocked_reason("169.254.169.254") or "")
    assert "fc00::/7" in (DEFAULT.blocked_reason("fd00:ec2::254") or "")
    assert "IPv4-mapped form of 127.0.0.1" in (DEFAULT.blocked_reason("::ffff:127.0.0.1") or "")
    assert "loopback" in (DEFAULT.blocked_reason("::1") or "")
    assert DEFAULT.blocked_reason("fe80::1%eth0") is not None
    assert DEFAULT.blocked_reason("not-an-address") is not None
    allow_loopback = OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.0/8")])
    assert allow_loopback.blocked_reason("::ffff:127.0.0.1") is None


# -- URLs and host names -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.org/x", "scheme must be http or https"),
        ("file:///etc/passwd", "scheme must be http or https"),
        ("example.org/hook", "scheme must be http or https"),
        ("https://user:pw@example.org/", "user name or password"),
        ("https://token@example.org/", "user name or password"),
        ("http:///nohost", "no host"),
        ("http://example.org:99999/", "not a valid URL"),
        ("http://exa mple.org/", "not a valid host name"),
        ("http://127.0.0.1:8080/", "loopback"),
        ("http://10.1.2.3/", "RFC 1918"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fd00:ec2::254]/", "unique local"),
        ("http://[::1]/", "loopback"),
        ("http://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254"),
        ("http://100.100.100.200/", "carrier-grade NAT"),
        ("http://0.0.0.0/", "unspecified"),
        ("http://255.255.255.255/", "broadcast"),
        ("http://localhost:9000/", "loopback"),
        ("http://api.localhost/", "loopback"),
        ("http://127.1/", "non-canonical"),
        ("http://2130706433/", "non-canonical"),
        ("http://0x7f000001/", "non-canonical"),
        ("http://0177.0.0.1/", "non-canonical"),
        ("http://" + "a" * 2000 + ".org/", "longer than"),
    ],
)
def test_check_url_refuses(url: str, reason: str) -> None:
    with pytest.raises(BlockedDestination) as caught:
        DEFAULT.check_url(url)
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.org/medic?x=1",
        "http://hooks.example.org:8080/",
        "https://93.184.216.34/hook",
        "https://[2606:4700::1111]/hook",
        "HTTPS://Hooks.Example.ORG/",
        "https://xn--bcher-kva.example/",
        "https://bücher.example/",
    ],
)
def test_check_url_accepts_public_destinations(url: str) -> None:
    assert DEFAULT.check_url(url).scheme in ("http", "https")


@given(st.ip_addresses(v=4))
def test_integer_spelling_of_any_ipv4_address_is_refused(address: Any) -> None:
    with pytest.raises(BlockedDestination, match="non-canonical"):
        DEFAULT.check_url(f"http://{int(address)}/")


def test_allow_hosts_admits_exact_names_and_subdomains_of_wildcards_only() -> None:
    policy = OutboundPolicy.from_strings("hooks.example.org, *.corp.example", "")
    assert policy.host_allowed("hooks.example.org")
    assert policy.host_allowed("HOOKS.example.org.")
    assert policy.host_allowed("a.corp.example")
    assert policy.host_allowed("a.b.corp.example")
    assert not policy.host_allowed("corp.example")
    assert not policy.host_allowed("evilcorp.example")
    assert not policy.host_allowed("corp.example.evil.org")
    assert not policy.host_allowed("other.example.org")
    assert not policy.host_allowed("x.hooks.example.org")
    policy.check_url("https://hooks.example.org/x")
    with pytest.raises(BlockedDestination, match="MEDIC_OUTBOUND_ALLOW_HOSTS"):
        policy.check_url("https://other.example.org/x")
    with pytest.raises(BlockedDestination, match="MEDIC_OUTBOUND_ALLOW_HOSTS"):
        policy.check_url("https://93.184.216.34/x")  # literals must be listed too


def test_policy_is_built_from_the_settings_strings() -> None:
    policy = OutboundPolicy.from_strings(" a.example , *.b.example,", "10.20.0.0/16, fd12::/16 ,")
    assert policy.allow_hosts == ("a.example", "*.b.example")
    assert policy.allow_networks == (
        ipaddress.ip_network("10.20.0.0/16"),
        ipaddress.ip_network("fd12::/16"),
    )
    assert OutboundPolicy.from_strings("", "").allow_networks == ()


@pytest.mark.parametrize(
    ("networks", "message"),
    [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("nonsense", "not a valid CIDR network"),
        ("10.0.0.0/33", "not a valid CIDR network"),
        ("10.0.0.0/8,fd00::/129", "'fd00::/129'"),
    ],
)
def test_a_bad_allow_network_is_a_clear_error(networks: str, message: str) -> None:
    with pytest.raises(ValueError, match="MEDIC_OUTBOUND_ALLOW_NETWORKS") as caught:
        OutboundPolicy.from_strings("", networks)
    assert message in str(caught.value)


def test_a_bad_allow_host_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not a host name"):
        OutboundPolicy.from_strings("https://hooks.example.org/", "")


# -- connect time ------------------------------------------------------------------------------


class FakeResolver(AbstractResolver):
    """Answers from a table, like a DNS server an attacker controls."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.calls.append(host)
        if host not in self.table:
            raise OSError(f"no such host {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[TestServer, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(f"{request.host}{request.path}")
        return web.Response(text="reached")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server, seen
    finally:
        await server.close()


LOOPBACK_ONLY = OutboundPolicy(allow_networks=[ipaddress.ip_network("127.0.0.1/32")])


async def test_resolver_returns_only_checked_addresses() -> None:
    fake = FakeResolver({"mixed.example.test": ["10.0.0.7", "93.184.216.34", "::1"]})
    results = await GuardedResolver(DEFAULT, fake).resolve("mixed.example.test", 443)
    assert [r["host"] for r in results] == ["93.184.216.34"]


async def test_resolver_raises_when_every_address_is_refused() -> None:
    fake = FakeResolver({"meta.example.test": ["169.254.169.254", "fd00:ec2::254"]})
    with pytest.raises(BlockedDestination, match="every address") as caught:
        await GuardedResolver(DEFAULT, fake).resolve("meta.example.test", 80)
    assert "169.254.169.254" in caught.value.reason and "fd00:ec2::254" in caught.value.reason


async def test_resolver_refuses_hosts_outside_allow_hosts_without_a_lookup() -> None:
    fake = FakeResolver({"evil.example.test": ["93.184.216.34"]})
    policy = OutboundPolicy(allow_hosts=["hooks.example.test"])
    with pytest.raises(BlockedDestination, match="MEDIC_OUTBOUND_ALLOW_HOSTS"):
        await GuardedResolver(policy, fake).resolve("evil.example.test", 80)
    assert fake.calls == []


async def test_a_public_looking_name_resolving_to_a_private_address_is_refused_at_connect(
    local_server: tuple[TestServer, list[str]],
) -> None:
    server, seen = local_server
    fake = FakeResolver({"public.example.test": ["127.0.0.1"]})
    async with guarded_session(DEFAULT, 5, resolver=fake) as session:
        with pytest.raises(BlockedDestination, match="loopback"):
            await session.get(f"http://public.example.test:{server.port}/x")
    assert fake.calls == ["public.example.test"]
    assert seen == []


async def test_the_checked_address_is_the_address_connected_to(
    local_server: tuple[TestServer, list[str]],
) -> None:
    server, seen = local_server
    # The name exists only in the fake: reaching the server proves the connector used the
    # address the guard returned, with no second lookup of its own.
    fake = FakeResolver({"hooks.example.test": ["127.0.0.1"]})
    async with (
        guarded_session(LOOPBACK_ONLY, 5, resolver=fake) as session,
        session.get(f"http://hooks.example.test:{server.port}/x") as response,
    ):
        assert response.status == 200
    assert seen == [f"hooks.example.test:{server.port}/x"]
    assert fake.calls == ["hooks.example.test"]


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::ffff:127.0.0.1]", "127.1", "2130706433", "localhost"]
)
async def test_literal_and_loopback_hosts_are_refused_before_any_connection(
    local_server: tuple[TestServer, list[str]], host: str
) -> None:
    server, seen = local_server
    fake = FakeResolver({})
    async with guarded_session(DEFAULT, 5, resolver=fake) as session:
        with pytest.raises(BlockedDestination):
            await session.get(f"http://{host}:{server.port}/x")
    assert seen == []
    assert fake.calls == []


async def test_allowed_literal_address_is_reached(
    local_server: tuple[TestServer, list[str]],
) -> None:
    server, seen = local_server
    async with (
        guarded_session(LOOPBACK_ONLY, 5, resolver=FakeResolver({})) as session,
        session.get(f"http://127.0.0.1:{server.port}/ok") as response,
    ):
        assert await response.text() == "reached"
    assert seen == [f"127.0.0.1:{server.port}/ok"]


async def test_requests_through_a_proxy_are_refused(
    local_server: tuple[TestServer, list[str]],
) -> None:
    server, seen = local_server
    async with guarded_session(LOOPBACK_ONLY, 5, resolver=FakeResolver({})) as session:
        with pytest.raises(BlockedDestination, match="proxy"):
            await session.get("http://93.184.216.34/x", proxy=f"http://127.0.0.1:{server.port}")
    assert seen == []


# -- Retry-After -------------------------------------------------------------------------------


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert retry_after_seconds("12", now) == 12.0
    assert retry_after_seconds("Sun, 01 Mar 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Sun, 01 Mar 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("999999", now) == 3600.0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds("", now) is None
    assert retry_after_seconds(None, now) is None
