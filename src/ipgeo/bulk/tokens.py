"""What each distinct input item of a bulk run turned out to be: an IP, a range, bad, or nothing."""

from __future__ import annotations

import ipaddress

SKIP, IP, RANGE, BAD = range(4)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Token:
    """What one distinct input item (as bytes) turned out to be, plus its pending hit count."""

    __slots__ = ("answer", "bounds", "facet", "hits", "ip", "kind", "reason", "tail", "text")

    def __init__(self, kind: int, text: str = "", reason: str = "") -> None:
        self.kind = kind
        self.text = text
        self.reason = reason
        self.ip = ""  # an IP's canonical text
        self.answer = -1  # an IP's answer id (``Resolver.answers``)
        self.facet = -1  # the summary facet of an IP's answer
        self.tail = b""
        self.hits = 0
        self.bounds: tuple[IPAddress, IPAddress] | None = None


SKIP_TOKEN = Token(SKIP)
_OVERLONG_REASON = "line longer than {} bytes"


def overlong(limit: int) -> Token:
    """The token of a line longer than ``limit`` bytes."""
    return Token(BAD, reason=_OVERLONG_REASON.format(limit))
