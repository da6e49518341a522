"""IP addresses of the bulk engine as ``(canonical text, version, integer)``, parsed cheaply."""

from __future__ import annotations

import ipaddress
import socket

from ipgeo.geo.queries import parse_ip

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Address = tuple[str, int, int]  # canonical text, version, integer value

_AF_INET, _AF_INET6 = socket.AF_INET, socket.AF_INET6
_pton, _ntop = socket.inet_pton, socket.inet_ntop


def parse_address(text: str) -> Address | None:
    """``(canonical text, version, integer)`` of an IP address, or ``None``; like ``parse_ip``."""
    try:
        # inet_pton accepts exactly the canonical dotted quads ipaddress accepts
        number = int.from_bytes(_pton(_AF_INET, text), "big")
    except OSError:
        packed = _canonical_v6(text)
        if packed is not None:
            return text, 6, int.from_bytes(packed, "big")
        ip = parse_ip(text)
        return None if ip is None else (str(ip), ip.version, int(ip))
    except (ValueError, TypeError):
        return None
    return text, 4, number


def _canonical_v6(text: str) -> bytes | None:
    """The packed address of ``text`` when it is an IPv6 address written the way ``ipaddress``
    writes it (the usual case in logs), else ``None``.

    ``inet_ntop`` writes RFC 5952 text (lower case, no leading zeros, the first longest run of
    two or more zero groups as ``::``), as ``ipaddress`` does, except for the dotted IPv4 forms
    it uses for ``::a.b.c.d`` and ``::ffff:a.b.c.d``: texts with a dot are left to ``parse_ip``.
    """
    if "." in text:
        return None
    try:
        packed = _pton(_AF_INET6, text)
    except (OSError, ValueError, TypeError):
        return None
    return packed if _ntop(_AF_INET6, packed) == text else None


def network_text(version: int, number: int, prefix: int) -> str:
    """``a.b.c.d/n`` (or IPv6) of the network of ``prefix`` bits that holds ``number``."""
    if version == 4:
        network_number = number >> (32 - prefix) << (32 - prefix) if prefix else 0
        return "%d.%d.%d.%d/%d" % (  # noqa: UP031 (the fastest formatting here)
            network_number >> 24,
            network_number >> 16 & 255,
            network_number >> 8 & 255,
            network_number & 255,
            prefix,
        )
    network_number = number >> (128 - prefix) << (128 - prefix) if prefix else 0
    text = _ntop(_AF_INET6, network_number.to_bytes(16, "big"))
    if "." in text:  # see ``_canonical_v6``
        text = str(ipaddress.IPv6Address(network_number))
    return f"{text}/{prefix}"
