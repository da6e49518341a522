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


def _strip_port(hop: str) -> str:
    """Drop a port from ``1.2.3.4:5678`` or ``[2001:db8::1]:5678`` (some proxies add one)."""
    if hop.startswith("[") and "]" in hop:
        return hop[1 : hop.index("]")]
    if hop.count(":") == 1:
        return hop.split(":", 1)[0]
    return hop
