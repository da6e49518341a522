"""Which IPv4 addresses the load generator may ask for: public ones the database knows.

Every request asks for a fresh random address (so a cache of answers cannot turn the
benchmark into a cache benchmark), drawn from the public IPv4 space minus the ranges the
City database has no record for. Those gaps (about 0.4 % of the public space in the bundled
GeoLite2 file) would otherwise show up as 404s and hide real errors among the non-2xx
responses. The gaps are read straight from the database's search tree (no record decoding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import maxminddb

# IANA special-purpose IPv4 ranges (the same list ipgeo answers "reserved" for).
SPECIAL_PURPOSE = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
)

Range = tuple[int, int]  # first and last address as integers, inclusive


def _node_reader(tree: bytes, record_size: int) -> Callable[[int], tuple[int, int]]:
    """Return ``children(node) -> (left, right)`` for a MaxMind DB search tree."""
    if record_size == 24:

        def children(node: int) -> tuple[int, int]:
            at = node * 6
            return (
                int.from_bytes(tree[at : at + 3], "big"),
                int.from_bytes(tree[at + 3 : at + 6], "big"),
            )

    elif record_size == 28:

        def children(node: int) -> tuple[int, int]:
            at = node * 7
            middle = tree[at + 3]
            return (
                ((middle & 0xF0) << 20) | int.from_bytes(tree[at : at + 3], "big"),
                ((middle & 0x0F) << 24) | int.from_bytes(tree[at + 4 : at + 7], "big"),
            )

    elif record_size == 32:

        def children(node: int) -> tuple[int, int]:
            at = node * 8
            return (
                int.from_bytes(tree[at : at + 4], "big"),
                int.from_bytes(tree[at + 4 : at + 8], "big"),
            )

    else:
        raise ValueError(f"unsupported MaxMind DB record size {record_size}")
    return children


def database_gaps(path: Path) -> list[Range]:
    """IPv4 ranges for which the database at ``path`` has no record, merged and sorted."""
    with maxminddb.open_database(str(path)) as reader:
        meta = reader.metadata()
    node_count, record_size = meta.node_count, meta.record_size
    with path.open("rb") as handle:
        tree = handle.read(node_count * record_size // 4)
    children = _node_reader(tree, record_size)
    node = 0
    if meta.ip_version == 6:  # IPv4 lives under ::/96 in an IPv6 tree
        for _ in range(96):
            if node >= node_count:
                break
            node = children(node)[0]
    gaps: list[Range] = []
    stack = [(node, 0, 0)]
    while stack:
        node, prefix, depth = stack.pop()
        if node < node_count:
            left, right = children(node)
            stack.append((right, (prefix << 1) | 1, depth + 1))
            stack.append((left, prefix << 1, depth + 1))
        elif node == node_count:  # "no data" marker
            size = 1 << (32 - depth)
            gaps.append((prefix * size, prefix * size + size - 1))
    return merge(gaps)


def merge(ranges: list[Range]) -> list[Range]:
    """Sort ``ranges`` and merge the overlapping or adjacent ones."""
    merged: list[Range] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def excluded_ranges(path: Path) -> list[Range]:
    """Special-purpose ranges plus the database's gaps: what the load generator skips."""
    special = []
    for cidr in SPECIAL_PURPOSE:
        net = ipaddress.IPv4Network(cidr)
        special.append((int(net.network_address), int(net.broadcast_address)))
    return merge(special + database_gaps(path))


def is_excluded(address: int, ranges: list[Range]) -> bool:
    """Whether ``address`` falls in one of the sorted, merged ``ranges`` (for tests)."""
    low, high = 0, len(ranges) - 1
    while low <= high:
        mid = (low + high) // 2
        first, last = ranges[mid]
        if address < first:
            high = mid - 1
        elif address > last:
            low = mid + 1
        else:
            return True
    return False
