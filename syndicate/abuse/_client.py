"""Who is asking: the client address of a request, trusting X-Forwarded-For only from configured proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse(value: str) -> Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _key(address: Address) -> str:
    """IPv4 as is; IPv6 by its /64 (one customer usually holds a whole /64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted_proxies: Iterable[str]) -> str:
    """The client to count a request against. `peer` is the socket's remote address; `forwarded_for`
    the X-Forwarded-For header values. The header is read only when the peer is a trusted proxy, from
    the right (what the nearest proxy saw) leftwards past further trusted proxies: anything left of
    the first untrusted hop could have been written by the client itself."""
    trusted: list[Network] = [ipaddress.ip_network(t, strict=False) for t in trusted_proxies]
    address = _parse(peer or "")
    if address is None:
        return "unknown"

    def is_trusted(a: Address) -> bool:
        return any(a in network for network in trusted)

    if not is_trusted(address):
        return _key(address)
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:  # garbage in the chain: the last good hop is the best we know
            break
        address = parsed
        if not is_trusted(parsed):
            break
    return _key(address)
