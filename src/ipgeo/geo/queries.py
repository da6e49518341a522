"""Parsing lookup queries: IP addresses, special-purpose ranges and domain names."""

from __future__ import annotations

import ipaddress
import re

from ipgeo.geo.errors import InvalidQuery, ReservedAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_QUERY_LENGTH = 253
_IPLIKE_RE = re.compile(r"^[0-9.]+$|:")

# IANA special-purpose ranges with the name people know them by, most specific first.
_SPECIAL: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "a 'this network' address"),
    ("10.0.0.0/8", "a private address (RFC 1918)"),
    ("100.64.0.0/10", "a shared address for carrier-grade NAT (RFC 6598)"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address"),
    ("172.16.0.0/12", "a private address (RFC 1918)"),
    ("192.0.0.0/24", "an IETF protocol assignment"),
    ("192.0.2.0/24", "a documentation address (TEST-NET-1)"),
    ("192.168.0.0/16", "a private address (RFC 1918)"),
    ("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    ("198.51.100.0/24", "a documentation address (TEST-NET-2)"),
    ("203.0.113.0/24", "a documentation address (TEST-NET-3)"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
    ("::/128", "the unspecified address"),
    ("::1/128", "a loopback address"),
    ("64:ff9b:1::/48", "a local-use IPv4/IPv6 translation address"),
    ("100::/64", "a discard-only address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/23", "an IETF protocol assignment"),
    ("fc00::/7", "a unique local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("ff00::/8", "a multicast address"),
)
_SPECIAL_NETS = tuple((ipaddress.ip_network(net), label) for net, label in _SPECIAL)


def parse_ip(text: str) -> IPAddress | None:
    """Parse an IPv4/IPv6 address (IPv4-mapped IPv6 becomes IPv4); ``None`` if not an IP.

    A scoped IPv6 address (``fe80::1%eth0``) is not one: a zone id names an interface of
    some host, never a place, so it is no location query (nor a client identity).
    """
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            return None
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
    return ip


def reserved_reason(ip: IPAddress) -> str | None:
    """Say why ``ip`` has no public location (private, loopback, …), or ``None`` if public."""
    for network, label in _SPECIAL_NETS:
        if ip.version == network.version and ip in network:
            return label
    if not ip.is_global:
        return "a reserved address"
    return None


def check_public(ip: IPAddress) -> None:
    """Raise ``ReservedAddress`` when ``ip`` is not a public address."""
    reason = reserved_reason(ip)
    if reason is not None:
        raise ReservedAddress(
            f"{ip} is {reason}; it has no public location to look up", reason=reason
        )


def normalize_domain(text: str) -> str:
    """Return the ASCII (IDNA) form of a domain name, or raise ``InvalidQuery``."""
    name = text.strip().rstrip(".").lower()
    shown = text[:80] + ("…" if len(text) > 80 else "")
    if not name or len(name) > MAX_QUERY_LENGTH:
        raise InvalidQuery(f"{shown!r} is not an IP address or a domain name")
    if _IPLIKE_RE.search(name):
        raise InvalidQuery(f"{shown!r} is not a valid IPv4 or IPv6 address")
    import idna  # here: only names need it, and IP-only commands skip its import (~5 ms)

    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidQuery(f"{shown!r} is not an IP address or a valid domain name") from None
    labels = ascii_name.split(".")
    if len(ascii_name) > MAX_QUERY_LENGTH or any(
        not label or len(label) > 63 or label.startswith("-") or label.endswith("-")
        for label in labels
    ):
        raise InvalidQuery(f"{shown!r} is not a valid domain name")
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*", ascii_name):
        raise InvalidQuery(f"{shown!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise InvalidQuery(f"{shown!r} is not a valid domain name (numeric top-level label)")
    return ascii_name
