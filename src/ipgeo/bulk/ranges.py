"""CIDRs and ranges in a bulk run: their tokens, and the lookups of the addresses they cover."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.options import Options
from ipgeo.bulk.parsing import parse_range
from ipgeo.bulk.resolver import Resolver
from ipgeo.bulk.tokens import BAD, RANGE, IPAddress, Token
from ipgeo.geo.addresses import Address

_EXPAND_CHUNK = 4096


def range_token(text: str) -> Token:
    """The token of a CIDR or range item (``BAD`` with the reason when it is not one)."""
    try:
        bounds = parse_range(text)
    except BulkError as exc:
        return Token(BAD, reason=str(exc))
    if bounds is None:
        return Token(BAD, reason="not an IP address, CIDR or range")
    token = Token(RANGE, text)
    token.bounds = bounds
    return token


def range_addresses(
    resolver: Resolver,
    options: Options,
    lineno: int,
    text: str,
    first: IPAddress,
    last: IPAddress,
) -> Iterator[list[Address]]:
    """The addresses of a range to look up, in chunks: every address with ``--expand``, else
    the first of each database network in it (at least one: its first address)."""
    start, end = int(first), int(last)
    version = first.version
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    if options.expand:
        size = end - start + 1
        if size > options.max_expand:
            raise BulkError(
                f"line {lineno}: {text} has {size:,} addresses, more than "
                f"--max-expand {options.max_expand:,}; raise --max-expand, or drop "
                "--expand to get one row per database network"
            )
        for chunk in range(start, end + 1, _EXPAND_CHUNK):
            stop = min(end + 1, chunk + _EXPAND_CHUNK)
            yield [(str(make(number)), version, number) for number in range(chunk, stop)]
        return
    found = False
    batch: list[Address] = []
    for address in resolver.networks(first, last):
        batch.append((str(address), version, int(address)))
        if len(batch) >= _EXPAND_CHUNK:
            found = True
            yield batch
            batch = []
    if batch or not found:
        yield batch or [(str(first), version, start)]
