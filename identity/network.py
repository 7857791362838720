"""Client addresses: which one to believe, and how addresses are grouped for counting.

The address of the end user is decided once per request, from the TCP peer and, only when that peer is one of the
operator's proxies (``IDENTITY_TRUSTED_PROXIES``), from ``X-Forwarded-For`` read right to left: each hop appended by a
trusted proxy is skipped, and the first address a trusted proxy received the request from is the client. Anything
further left was written by the client and is not believed. No other header is read here; ``auth0-forwarded-for`` is
decided per client by the token endpoint (API.md §4.4).

Counters group IPv6 addresses by /64, the block one subscriber gets, so rotating addresses inside it gives no extra
guesses; IPv4 (and IPv4-mapped IPv6) addresses count alone.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["Networks", "counting_key", "parse_address", "parse_networks", "resolve_client_ip"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str | None) -> Address | None:
    """An address, or ``None`` when ``text`` is not one (IPv4-mapped IPv6 becomes IPv4; a zone id is dropped)."""
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(items: Iterable[str], *, what: str = "network") -> tuple[Network, ...]:
    """Parse addresses and CIDRs (``10.0.0.0/8``, ``2001:db8::/32``, ``192.0.2.7``); ``ValueError`` names a bad one."""
    networks = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{what} {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


class Networks:
    """A set of networks to test addresses against."""

    def __init__(self, networks: Sequence[Network] = ()) -> None:
        self.networks = tuple(networks)

    @classmethod
    def parse(cls, items: Iterable[str], *, what: str = "network") -> Networks:
        """From addresses and CIDRs."""
        return cls(parse_networks(items, what=what))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: object) -> bool:
        if isinstance(address, str):
            address = parse_address(address)
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address.version == network.version and address in network for network in self.networks)


def resolve_client_ip(peer: str | None, forwarded_for: Sequence[str], trusted: Networks) -> str | None:
    """The end user's address: the peer, or, from a trusted peer, the right-most untrusted ``X-Forwarded-For`` hop.

    ``forwarded_for`` holds every ``X-Forwarded-For`` header value in order. An unparsable hop stops the walk: the
    last address a trusted proxy vouched for is used.
    """
    current = parse_address(peer)
    if current is None:
        return peer  # not an IP socket (a test transport, a UNIX socket): nothing to believe beyond it
    if current not in trusted:
        return str(current)
    hops = [hop for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        current = address
        if address not in trusted:
            break
    return str(current)


def counting_key(ip: str | None) -> str | None:
    """The address as counters group it: IPv6 by its /64 network, IPv4 alone."""
    address = parse_address(ip)
    if address is None:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
