"""The client IP allowlist (``IPGEO_ALLOWED``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(ip: IPAddress | None, networks: Iterable[IPNetwork]) -> bool:
    """True when ``ip`` is inside one of ``networks`` (IPv4-mapped IPv6 counts as IPv4)."""
    if ip is None:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def is_allowed(ip: IPAddress | None, allowed: tuple[IPNetwork, ...]) -> bool:
    """Whether ``ip`` may use the service: everyone when ``allowed`` is empty."""
    return not allowed or in_networks(ip, allowed)
