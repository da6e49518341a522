"""One generation of the databases in service: open readers, their tree walkers, their records.

A generation is made whole before it is put in service and never changes afterwards; a
reload makes a new one and swaps one reference (``GeoService.refresh``, the one reload
check). Whatever is derived from the files (walkers, decoded records, renderings) lives in
the generation, so nothing else has to notice a reload: it is dropped with the old one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ipgeo.geo.database import DatabaseError, MaxMindDatabase
from ipgeo.geo.records import DEFAULT_RECORDS, PlaceRecord, RecordCache
from ipgeo.geo.tree import FileSignature, IntArray, SearchTree, TreeWalker, signature_of

# Tries at opening a reader and its tree from the same file while it is being replaced.
_OPEN_ATTEMPTS = 3
# IPv6 batches up to this size are walked one address after the other (``TreeWalker.find``):
# array walks cost per tree level, not per address.
_SINGLE_V6_WALKS = 64


def file_signature(path: Path) -> FileSignature | None:
    """What identifies the current version of a file (``None`` when it is missing)."""
    try:
        return signature_of(os.stat(path))
    except OSError:
        return None


def open_database(path: Path) -> tuple[MaxMindDatabase, TreeWalker]:
    """A verified reader and a walker of the same file (not of one that replaced it)."""
    for _ in range(_OPEN_ATTEMPTS):
        database = MaxMindDatabase(path)
        info = database.info
        try:
            tree = SearchTree(path, info.node_count, info.record_size, info.ip_version)
        except (OSError, ValueError) as exc:
            database.close()
            raise DatabaseError(f"{path} is not a valid MaxMind database: {exc}") from None
        if file_signature(path) == tree.signature == database.signature:
            return database, TreeWalker(tree)
        tree.close()  # replaced between the two opens: try again
        database.close()
    raise DatabaseError(f"{path} kept changing while it was opened")


class Generation:
    """The City and optional ASN database of one generation, walked and decoded."""

    def __init__(
        self,
        city_path: Path,
        asn_path: Path | None,
        number: int,
        record_cache_size: int = DEFAULT_RECORDS,
    ) -> None:
        self.number = number
        self.city, self.city_walker = open_database(city_path)
        self.asn: MaxMindDatabase | None = None
        self.asn_walker: TreeWalker | None = None
        if asn_path is not None:
            try:
                self.asn, self.asn_walker = open_database(asn_path)
            except DatabaseError:
                self.close()
                raise
        self.signatures = (self.city.signature, self.asn.signature if self.asn else None)
        self.records = RecordCache(self.city, self.asn, record_cache_size)

    def locate_v4(self, numbers: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """City pointers, prefix lengths and ASN pointers of IPv4 addresses, as arrays."""
        city, prefixes = self.city_walker.walk_v4(numbers)
        if self.asn_walker is None:
            return city, prefixes, np.zeros(len(numbers), dtype=np.int64)
        return city, prefixes, self.asn_walker.walk_v4(numbers)[0]

    def locate(self, version: int, numbers: list[int]) -> tuple[list[int], list[int], list[int]]:
        """``locate_v4`` for addresses of either version, as lists."""
        if version == 4:
            city, prefixes, asn = self.locate_v4(np.array(numbers, dtype=np.int64))
            return city.tolist(), prefixes.tolist(), asn.tolist()
        city_list, prefix_list = _walk_v6(self.city_walker, numbers)
        asn_list = _walk_v6(self.asn_walker, numbers)[0] if self.asn_walker else [0] * len(numbers)
        return city_list, prefix_list, asn_list

    def asn_at(self, pointer: int, version: int, number: int) -> tuple[int | None, str | None]:
        """``(asn, organisation)`` of ASN record ``pointer`` (as ``locate`` found it)."""
        if self.asn_walker is None or pointer <= self.asn_walker.node_count:
            return None, None
        return self.records.asn(pointer, version, number)

    def networks(self, version: int, first: int, last: int) -> Iterator[int]:
        """The first address (within ``first..last``) of every City network with a record."""
        walker = self.city_walker
        width = 32 if version == 4 else 128
        current = first
        while current <= last:
            pointer, prefix = walker.find(version, current)
            host_bits = width - prefix
            if pointer > walker.node_count:
                yield current
            if host_bits >= width:
                break
            current = ((current >> host_bits) + 1) << host_bits

    def find(self, version: int, number: int) -> tuple[int, int]:
        """The City record pointer and prefix length of one address."""
        return self.city_walker.find(version, number)

    def place(
        self, pointer: int, version: int, number: int, languages: tuple[str, ...]
    ) -> PlaceRecord | None:
        """The place at City record ``pointer`` (``None``: no record there)."""
        if pointer <= self.city_walker.node_count:
            return None
        return self.records.place(pointer, version, number, languages)

    def asn_of(self, version: int, number: int) -> tuple[int | None, str | None]:
        """``(asn, organisation)`` of one address (``(None, None)`` without ASN data)."""
        walker = self.asn_walker
        if walker is None:
            return None, None
        return self.asn_at(walker.find(version, number)[0], version, number)

    def close(self) -> None:
        """Unmap the files (only when no lookup can use this generation any more)."""
        self.city.close()
        self.city_walker.close()
        if self.asn is not None:
            self.asn.close()
        if self.asn_walker is not None:
            self.asn_walker.close()


def _walk_v6(walker: TreeWalker | None, numbers: list[int]) -> tuple[list[int], list[int]]:
    """Pointers and prefix lengths of IPv6 addresses: a few one by one, many as arrays."""
    assert walker is not None
    if len(numbers) <= _SINGLE_V6_WALKS:
        found = [walker.find(6, number) for number in numbers]
        return [pointer for pointer, _ in found], [prefix for _, prefix in found]
    pointers, prefixes = walker.walk_v6(numbers)
    return pointers.tolist(), prefixes.tolist()
