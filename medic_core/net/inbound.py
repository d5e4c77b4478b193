"""Who is calling: the client address of an inbound request, and the source limits count it as.

The TCP peer is the client only when nothing stands in between. Behind a load balancer (the Helm
chart puts an AWS ALB in front of both ports) every peer is a balancer node, and the client is
in ``X-Forwarded-For``, which each proxy extends with the address it received the request from.
Everything to the left of what the trusted proxies appended was written by the client and is
therefore worthless: a client can claim any address there. So the address is found from the
right: start at the peer; while the current hop is a trusted proxy (``MEDIC_TRUSTED_PROXIES``),
step to the entry it appended; the first hop that is not trusted is the client. A request from
an untrusted peer is attributed to that peer, whatever headers it sends (spoofing
``X-Forwarded-For`` moves nobody into another bucket). An entry that is not an address stops the
walk at the proxy that passed it on.

Limits count a client by its *source*: an IPv4 address, or the /64 an IPv6 address belongs to
(one host usually holds a whole /64, so counting single IPv6 addresses would hand it 2^64
budgets).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The source of requests whose peer address is unknown (a Unix socket, a closed transport).
UNKNOWN_SOURCE = "unknown"


def parse_networks(text: str, setting: str) -> tuple[IPNetwork, ...]:
    """The CIDR networks of a comma-separated setting; a bad entry raises ``ValueError`` that
    names the setting and suggests the fix."""
    networks: list[IPNetwork] = []
    for entry in (n.strip() for n in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=True))
        except ValueError as exc:
            try:
                hint = f"; did you mean {ipaddress.ip_network(entry, strict=False)}?"
            except ValueError:
                hint = "; write a network as address/prefix, e.g. 10.20.0.0/16"
            raise ValueError(
                f"{setting} entry {entry!r} is not a valid CIDR network ({exc}){hint}"
            ) from None
    return tuple(networks)


def parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``[::1]:80``), with
    an IPv4-mapped IPv6 address read as the IPv4 address it stands for; None if it is none."""
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # IPv4 with a port; IPv6 has at least two colons
        value = value.partition(":")[0]
    try:
        ip = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def source_of(address: str | None) -> str:
    """The source limits count ``address`` as: itself for IPv4, its /64 for IPv6."""
    ip = parse_ip(address) if address else None
    if ip is None:
        return UNKNOWN_SOURCE
    if isinstance(ip, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` entries are believed. Immutable; one per process."""

    def __init__(self, networks: Iterable[IPNetwork] = ()) -> None:
        self.networks: tuple[IPNetwork, ...] = tuple(networks)

    @classmethod
    def from_setting(cls, text: str) -> TrustedProxies:
        return cls(parse_networks(text, "MEDIC_TRUSTED_PROXIES"))

    def trusts(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip in network for network in self.networks)

    def client_address(self, peer: str | None, forwarded_for: Sequence[str] = ()) -> str | None:
        """The client's address (see the module docstring); ``forwarded_for`` holds every
        ``X-Forwarded-For`` header value of the request, in the order received."""
        current = parse_ip(peer) if peer else None
        if current is None:
            return peer
        if not self.networks or not self.trusts(current):
            return str(current)
        hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):
            ip = parse_ip(hop)
            if ip is None:
                break  # not an address: the proxy that passed it on is as far as we can see
            current = ip
            if not self.trusts(current):
                break
        return str(current)
