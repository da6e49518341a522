"""One generation of the databases in service: open readers, their tree walkers, their records.

A generation is made whole before it is put in service and never changes afterwards; a
reload makes a new one and swaps one reference (``GeoService.refresh``, the one reload
check). Whatever is derived from the files (walkers, decoded records, renderings) lives in
the generation, so nothing else has to notice a reload: it is dropped with the old one.
"""

from __future__ import annotations

import os
from pathlib import Path

from ipgeo.geo.database import DatabaseError, MaxMindDatabase
from ipgeo.geo.records import DEFAULT_RECORDS, PlaceRecord, RecordCache
from ipgeo.geo.tree import FileSignature, SearchTree, TreeWalker, signature_of

# Tries at opening a reader and its tree from the same file while it is being replaced.
_OPEN_ATTEMPTS = 3


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
        pointer, _ = walker.find(version, number)
        if pointer <= walker.node_count:
            return None, None
        return self.records.asn(pointer, version, number)

    def close(self) -> None:
        """Unmap the files (only when no lookup can use this generation any more)."""
        self.city.close()
        self.city_walker.close()
        if self.asn is not None:
            self.asn.close()
        if self.asn_walker is not None:
            self.asn_walker.close()
