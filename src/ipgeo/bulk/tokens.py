"""What each distinct input item of a bulk run turned out to be: an IP, a range, bad, or nothing."""

from __future__ import annotations

import ipaddress

from ipgeo.bulk.lookup import Entry

SKIP, IP, RANGE, BAD = range(4)
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Token:
    """What one distinct input item (as bytes) turned out to be, plus its pending hit count."""

    __slots__ = ("bounds", "entry", "facet", "hits", "kind", "reason", "tail", "text")

    def __init__(self, kind: int, text: str = "", reason: str = "") -> None:
        self.kind = kind
        self.text = text
        self.reason = reason
        self.entry: Entry | None = None  # set where rows are rendered from it
        self.facet = -1  # the summary facet of an IP's answer, once known
        self.tail = b""
        self.hits = 0
        self.bounds: tuple[IPAddress, IPAddress] | None = None


SKIP_TOKEN = Token(SKIP)
_OVERLONG_REASON = "line longer than {} bytes"


def overlong(limit: int) -> Token:
    """The token of a line longer than ``limit`` bytes."""
    return Token(BAD, reason=_OVERLONG_REASON.format(limit))
