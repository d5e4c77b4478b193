"""The outbound guard: which destinations Medic may call on a user's behalf, enforced at connect.

Webhook notifiers (and playbook webhook steps) POST to URLs that users type in. Unguarded, such a
URL reaches whatever Medic's host can reach — the cloud metadata service at 169.254.169.254, a
database on 10.0.0.0/8, an admin port on localhost: server-side request forgery. An
``OutboundPolicy`` decides:

- the URL is ``http`` or ``https`` and carries no user name or password;
- when ``allow_hosts`` is set, the host is one of its entries (``hooks.example.org`` exactly, or
  ``*.example.org`` for any subdomain of example.org — not example.org itself);
- every address connected to is public unicast: not private (RFC 1918), loopback, link-local,
  carrier-grade NAT, multicast, unspecified, reserved or broadcast, documentation or benchmarking
  space, IPv6 unique-local or site-local, outside IPv6 global unicast (2000::/3), nor an IPv6
  address that embeds a refused IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
  Teredo) — unless it lies inside one of ``allow_networks``.

**The address that was checked is the address connected to.** ``guarded_session`` builds an
aiohttp session whose ``GuardedConnector`` resolves names through ``GuardedResolver``: it asks
the real resolver, drops refused addresses and hands only the checked ones to the connector,
which connects to exactly those (aiohttp passes numeric addresses on; there is no second lookup).
A name that answers with a public address when validated and a private one when used (DNS
rebinding) therefore has no window. When every address is refused the request fails with
``BlockedDestination``; there is no fallback. aiohttp does not consult the resolver for
IP-literal hosts, so ``GuardedConnector.connect`` checks the URL itself (scheme, host list, literal
address) before every new connection. Requests through a proxy are refused (the resolver would
check the proxy, not the destination) and the session ignores ``HTTP_PROXY``-style variables.

**Redirects are never followed.** Callers pass ``allow_redirects=False`` and treat a 3xx reply as
a failed delivery ("the receiver redirected; configure the final URL"): following it would let the
receiver choose a second destination.

``OutboundPolicy.check_url`` is also what validates a URL when it is saved: syntax, the host list
and literal addresses. DNS is not consulted then; names are checked each time they are resolved.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from aiohttp import ClientSession, ClientTimeout, DummyCookieJar, TCPConnector
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from medic_core.net.inbound import IPAddress, IPNetwork, parse_networks

if TYPE_CHECKING:
    from aiohttp import ClientRequest
    from aiohttp.connector import Connection
    from aiohttp.tracing import Trace

    from medic_core.settings import Settings

log = logging.getLogger(__name__)


MAX_URL_LENGTH = 2000
ALLOW_NETWORKS_HINT = (
    "if this receiver is meant to be internal, add its network to MEDIC_OUTBOUND_ALLOW_NETWORKS"
)


def _networks(*entries: tuple[str, str]) -> tuple[tuple[IPNetwork, str], ...]:
    return tuple((ipaddress.ip_network(cidr), label) for cidr, label in entries)


#: Networks never called unless re-admitted by ``allow_networks``, with what they are.
#: Order matters only for the label reported (the first match wins).
BLOCKED_NETWORKS: tuple[tuple[IPNetwork, str], ...] = _networks(
    ("0.0.0.0/8", "'this network' / unspecified"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local, where cloud metadata services live"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.88.99.0/24", "6to4 relay anycast (deprecated)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved, including broadcast 255.255.255.255"),
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("::/96", "IPv4-compatible (deprecated)"),
    ("::ffff:0:0:0/96", "IPv4-translated"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("100::/64", "discard-only"),
    ("2001:2::/48", "benchmarking"),
    ("2001:10::/28", "ORCHID (deprecated)"),
    ("2001:20::/28", "ORCHIDv2"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "SRv6 segment identifiers"),
    ("fc00::/7", "unique local (ULA), where fd00:ec2::254 metadata lives"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
)
_IPV6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LOCALHOST_V4 = ipaddress.IPv4Address("127.0.0.1")
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_NUMERIC_HOST = re.compile(r"^[0-9a-fx.]+$")


class BlockedDestination(ValueError):
    """A destination the outbound policy refuses (or a URL that cannot be a destination).

    ``reason`` says why in words an operator can act on.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_address(value: str) -> IPAddress:
    """An IP address from a resolver's or URL's text form (an IPv6 ``%zone`` is ignored)."""
    return ipaddress.ip_address(value.split("%", 1)[0])


def _normalise_host(host: str) -> str:
    return host.strip().rstrip(".").lower()


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str] | None:
    """The IPv4 address an IPv6 address stands for on the wire (mapped or NAT64), if any."""
    if ip in _IPV4_MAPPED:
        assert ip.ipv4_mapped is not None
        return ip.ipv4_mapped, "IPv4-mapped"
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), "NAT64"
    return None


class OutboundPolicy:
    """Which destinations outbound requests may reach. Immutable; share one per process."""

    def __init__(
        self, allow_hosts: Iterable[str] = (), allow_networks: Iterable[IPNetwork] = ()
    ) -> None:
        hosts = []
        for entry in allow_hosts:
            host = _normalise_host(entry)
            if not _HOST_PATTERN.match(host):
                raise ValueError(
                    f"outbound allow-host {entry!r} is not a host name; use e.g. "
                    "'hooks.example.org' or '*.example.org'"
                )
            hosts.append(host)
        self.allow_hosts: tuple[str, ...] = tuple(hosts)
        self.allow_networks: tuple[IPNetwork, ...] = tuple(allow_networks)

    @classmethod
    def from_strings(cls, allow_hosts: str, allow_networks: str) -> OutboundPolicy:
        """Build from the comma-separated setting values; a bad entry raises ``ValueError``."""
        hosts = [h.strip() for h in allow_hosts.split(",") if h.strip()]
        networks = parse_networks(allow_networks, "MEDIC_OUTBOUND_ALLOW_NETWORKS")
        return cls(hosts, networks)

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundPolicy:
        return cls.from_strings(settings.outbound_allow_hosts, settings.outbound_allow_networks)

    def __repr__(self) -> str:
        return (
            f"OutboundPolicy(allow_hosts={list(self.allow_hosts)!r}, "
            f"allow_networks={[str(n) for n in self.allow_networks]!r})"
        )

    # -- addresses ---------------------------------------------------------------------------

    def blocked_reason(self, address: str | IPAddress) -> str | None:
        """Why ``address`` may not be connected to, or None when it may."""
        try:
            ip = parse_address(address) if isinstance(address, str) else address
        except ValueError:
            return f"{address!r} is not an IP address"
        return self._reason(ip)

    def is_allowed(self, address: str | IPAddress) -> bool:
        return self.blocked_reason(address) is None

    def _admitted(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow_networks)

    def _reason(self, ip: IPAddress) -> str | None:
        if self._admitted(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(ip)
            if embedded is not None:
                v4, form = embedded
                inner = self._reason(v4)
                return None if inner is None else f"{ip} is the {form} form of {v4}: {inner}"
        for net, label in BLOCKED_NETWORKS:
            if ip.version == net.version and ip in net:
                return f"{ip} is in {net} ({label})"
        if isinstance(ip, ipaddress.IPv6Address):
            if ip not in _IPV6_GLOBAL_UNICAST:
                return f"{ip} is not an IPv6 global unicast address (outside 2000::/3)"
            if ip.sixtofour is not None:
                inner = self._reason(ip.sixtofour)
                if inner is not None:
                    return f"{ip} is a 6to4 address embedding {ip.sixtofour}: {inner}"
            if ip.teredo is not None:
                for part in ip.teredo:
                    inner = self._reason(part)
                    if inner is not None:
                        return f"{ip} is a Teredo address embedding {part}: {inner}"
        return None

    # -- host names and URLs -----------------------------------------------------------------

    def host_allowed(self, host: str) -> bool:
        """Whether ``host`` passes ``allow_hosts`` (always, when the list is empty)."""
        if not self.allow_hosts:
            return True
        name = _normalise_host(host)
        for entry in self.allow_hosts:
            if entry.startswith("*."):
                if name.endswith(entry[1:]) and len(name) > len(entry) - 1:
                    return True
            elif name == entry:
                return True
        return False

    def check_url(self, url: str | URL) -> URL:
        """Validate a destination URL without DNS; return it parsed.

        Raises ``BlockedDestination`` for anything but an absolute http(s) URL without
        credentials whose host passes ``allow_hosts`` and, when it is an IP address (or
        ``localhost``), passes the address rules.
        """
        if isinstance(url, str):
            if len(url) > MAX_URL_LENGTH:
                raise BlockedDestination(f"URL is longer than {MAX_URL_LENGTH} characters")
            try:
                parsed = URL(url)
                parsed.port  # noqa: B018 - an out-of-range port raises here
            except (ValueError, TypeError) as exc:
                raise BlockedDestination(f"{url!r} is not a valid URL ({exc})") from None
        else:
            parsed = url
        if parsed.scheme not in ("http", "https"):
            raise BlockedDestination(
                f"URL scheme must be http or https, not {parsed.scheme or 'missing'!r}"
            )
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise BlockedDestination(
                "URL must not contain a user name or password; send credentials in a header"
            )
        raw_host = parsed.raw_host
        if not raw_host:
            raise BlockedDestination("URL has no host")
        host = _normalise_host(raw_host)
        if not self.host_allowed(host):
            raise BlockedDestination(
                f"host {host!r} is not in MEDIC_OUTBOUND_ALLOW_HOSTS "
                f"({', '.join(self.allow_hosts)})"
            )
        address = _ip_literal(host)
        if address is None and not _HOSTNAME.match(host):
            raise BlockedDestination(f"host {host!r} is not a valid host name")
        if address is None and (host == "localhost" or host.endswith(".localhost")):
            address = _LOCALHOST_V4  # RFC 6761: always loopback, whatever DNS says
        if address is not None:
            reason = self._reason(address)
            if reason is not None:
                raise BlockedDestination(
                    f"destination {host!r} refused: {reason}; {ALLOW_NETWORKS_HINT}"
                )
        return parsed

    def filter_resolved(self, host: str, results: Sequence[ResolveResult]) -> list[ResolveResult]:
        """The resolved addresses that may be connected to; raise when there are none."""
        allowed: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            reason = self.blocked_reason(result["host"])
            if reason is None:
                allowed.append(result)
            else:
                refused.append(reason)
        if not allowed:
            detail = "; ".join(dict.fromkeys(refused)) or "it resolved to no address"
            raise BlockedDestination(
                f"every address {host!r} resolves to is refused: {detail}; {ALLOW_NETWORKS_HINT}"
            )
        if refused:
            log.warning(
                "dropped refused addresses of %s: %s", host, "; ".join(dict.fromkeys(refused))
            )
        return allowed


def _ip_literal(host: str) -> IPAddress | None:
    """The address a URL host denotes when it is an IP literal (in any form), else None.

    Non-canonical IPv4 forms that the C resolver would accept (``127.1``, ``0x7f000001``,
    ``2130706433``) are refused outright.
    """
    if ":" in host:
        try:
            return parse_address(host)
        except ValueError:
            raise BlockedDestination(f"host {host!r} is not a valid IPv6 address") from None
    try:
        return ipaddress.IPv4Address(host)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(host):
        try:
            packed = socket.inet_aton(host)
        except OSError:
            return None
        canonical = ipaddress.IPv4Address(packed)
        raise BlockedDestination(
            f"host {host!r} is an IPv4 address in a non-canonical form; write it as {canonical}"
        )
    return None


class GuardedResolver(AbstractResolver):
    """Resolves through ``inner`` (aiohttp's default resolver) and returns only allowed addresses.

    The connector connects to exactly what this returns, so the check and the connection see
    the same address. Raises ``BlockedDestination`` when the host is not in ``allow_hosts`` or
    every address it resolves to is refused.
    """

    def __init__(self, policy: OutboundPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner
        self._owns_inner = inner is None

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self.policy.host_allowed(host):
            raise BlockedDestination(f"host {host!r} is not in MEDIC_OUTBOUND_ALLOW_HOSTS")
        if self._inner is None:
            self._inner = DefaultResolver()  # needs the running loop, hence created here
        results = await self._inner.resolve(host, port, family)
        return self.policy.filter_resolved(host, results)

    async def close(self) -> None:
        if self._owns_inner and self._inner is not None:
            await self._inner.close()


class GuardedConnector(TCPConnector):
    """A TCP connector that resolves through ``GuardedResolver`` and checks literal-IP URLs."""

    def __init__(
        self,
        policy: OutboundPolicy,
        *,
        resolver: AbstractResolver | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(resolver=GuardedResolver(policy, resolver), **kwargs)
        self.policy = policy

    async def connect(
        self, req: ClientRequest, traces: list[Trace], timeout: ClientTimeout
    ) -> Connection:
        if req.proxy is not None:
            raise BlockedDestination(
                "requests through a proxy are refused: the guard must see the destination"
            )
        self.policy.check_url(req.url)
        return await super().connect(req, traces, timeout)


def guarded_session(
    policy: OutboundPolicy,
    timeout: float | ClientTimeout,
    *,
    resolver: AbstractResolver | None = None,
) -> ClientSession:
    """An aiohttp session that only reaches destinations ``policy`` allows.

    Call it inside a running event loop and close the session when done. ``resolver`` replaces
    aiohttp's default resolver underneath the guard (tests inject fakes). Pass
    ``allow_redirects=False`` to every request: redirects are not followed by design. The
    session keeps no cookies and ignores proxy environment variables.
    """
    client_timeout = timeout if isinstance(timeout, ClientTimeout) else ClientTimeout(total=timeout)
    return ClientSession(
        connector=GuardedConnector(policy, resolver=resolver),
        timeout=client_timeout,
        trust_env=False,
        cookie_jar=DummyCookieJar(),
    )


def retry_after_seconds(
    value: str | None, now: datetime | None = None, *, limit: float = 3600.0
) -> float | None:
    """Seconds an HTTP ``Retry-After`` value asks to wait (delta-seconds or HTTP-date).

    None when absent or unreadable; never negative; capped at ``limit`` so a receiver cannot
    park a delivery for days.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(int(text))
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), limit)
