"""Finding the real client address behind trusted reverse proxies (no Flask)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ipgeo.geo.queries import parse_ip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _trusted(ip: IPAddress, proxies: Iterable[IPNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def client_ip(
    peer: str,
    forwarded_for: str | None,
    real_ip: str | None,
    trusted_proxies: tuple[IPNetwork, ...],
) -> IPAddress | None:
    """Return the client address of a request.

    Forwarding headers count only when the direct ``peer`` is a trusted proxy; then the
    rightmost ``X-Forwarded-For`` entry that is not itself a trusted proxy is the client
    (``X-Real-IP`` when there is no ``X-Forwarded-For``). An unparsable entry stops the walk:
    everything left of it is unverifiable, so the last trusted hop is used instead. An entry
    with a zone id (``fe80::1%eth0``) is unparsable: it names an interface of some host, not a
    client. A zone id of the ``peer`` itself is dropped (the socket's address is the client).
    Returns ``None`` only when ``peer`` itself is not an IP address (e.g. a unix socket).
    """
    current = parse_ip(peer.partition("%")[0])
    if current is None or not trusted_proxies or not _trusted(current, trusted_proxies):
        return current
    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",")]
    elif real_ip:
        hops = [real_ip.strip()]
    else:
        return current
    for hop in reversed(hops):
        address = _strip_port(hop)
        ip = None if "%" in address else parse_ip(address)
        if ip is None:
            return current
        current = ip
        if not _trusted(ip, trusted_proxies):
            return ip
    return current


def client_key(ip: IPAddress, ipv6_prefix: int = 64) -> str:
    """The identity a client is counted under (rate limits, visits): an IPv4 address is its
    text (``192.0.2.7``), an IPv6 address its ``/ipv6_prefix`` network (``2001:db8:1:2::/64``).

    One IPv6 subscriber usually holds a whole /64 and picks new addresses in it at will, so
    keying by address would let it dodge a limit. An IPv4-mapped address counts as IPv4, and a
    zone id is ignored. ``ipv6_prefix`` must be within 1..128 (``ValueError`` otherwise).
    """
    if not 1 <= ipv6_prefix <= 128:
        raise ValueError(f"an IPv6 prefix length must be within 1..128, not {ipv6_prefix}")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    return str(ipaddress.IPv6Network((int(ip), ipv6_prefix), strict=False))


def _strip_port(hop: str) -> str:
    """Drop a port from ``1.2.3.4:5678`` or ``[2001:db8::1]:5678`` (some proxies add one)."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop
