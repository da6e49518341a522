"""The one record cache: each database record decoded once per generation, in one form.

A City record costs ~10 µs to decode (the C extension; the tree walk is 0.3 µs of that), ~3 µs
to map to a place and ~4 µs to render as a batch template, while most addresses share
records. So every record is decoded and mapped once per database generation and language
preference, keyed by its pointer, into a ``PlaceRecord``: the place values in
``PLACE_VALUES`` order. Every output is rendered from that one form (the JSON answer, CSV
cells, summary facets, batch templates); each renderer may keep its rendering of a record in
the record's ``renderings`` (``PlaceRecord.rendering``), so it is made once as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Mapping
from itertools import islice
from typing import Any, TypeVar

from ipgeo.geo.database import PLACE_VALUES, MaxMindDatabase, place_values

T = TypeVar("T")
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Per generation and process; ~1.5 kB of RSS each with a batch template. Random addresses
# touch 130k of the bundled file's 510k IPv4 records per million: with half as many entries,
# a long run misses ~13 % of lookups instead of ~9 % (``python -m bench.records``).
DEFAULT_RECORDS = 131_072
# A full cache forgets this share of its entries, the least recently used ones, at once.
FORGET_SHARE = 16
ZONE_AT = PLACE_VALUES.index("time_zone")
LATITUDE_AT = PLACE_VALUES.index("latitude")
LONGITUDE_AT = PLACE_VALUES.index("longitude")
NO_ASN: tuple[int | None, str | None] = (None, None)


class PlaceRecord:
    """One City record's place (``PLACE_VALUES``) and the renderings made from it."""

    __slots__ = ("renderings", "values")

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values
        self.renderings: dict[Hashable, Any] = {}

    @property
    def time_zone(self) -> str | None:
        """The time zone the record itself names."""
        zone: str | None = self.values[ZONE_AT]
        return zone

    def rendering(self, key: Hashable, make: Callable[[PlaceRecord], T]) -> T:
        """``make(self)``, made once per ``key`` (a renderer's name and its options)."""
        try:
            found: T = self.renderings[key]
        except KeyError:
            found = self.renderings[key] = make(self)
        return found

    def zone(self, locate: Callable[[float, float], str | None]) -> tuple[str, str] | None:
        """``(time zone, source)``: the record's own, else found from polygons at its point.

        A zone from polygons is asked for every time: the locator's answer may change with
        its state (PostGIS, or the embedded polygons while PostGIS is down).
        """
        named = self.values[ZONE_AT]
        if named:
            return named, "database"
        latitude, longitude = self.values[LATITUDE_AT], self.values[LONGITUDE_AT]
        if latitude is None or longitude is None:
            return None
        found = locate(latitude, longitude)
        return (found, "polygon") if found else None


_NOT_CACHED = PlaceRecord(())  # what the cache answers for a pointer it does not hold


def address_of(version: int, number: int) -> IPAddress:
    """The ``ipaddress`` object of an address given as version and integer."""
    return ipaddress.IPv4Address(number) if version == 4 else ipaddress.IPv6Address(number)


class RecordCache:
    """Decoded City and ASN records of one generation, by record pointer."""

    def __init__(
        self, city: MaxMindDatabase, asn: MaxMindDatabase | None, size: int = DEFAULT_RECORDS
    ) -> None:
        self.city_database = city
        self.asn_database = asn
        self.size = size
        # by language preference, then by pointer (int keys hash cheaply)
        self._places: dict[tuple[str, ...], dict[int, PlaceRecord | None]] = {}
        self._asns: dict[int, tuple[int | None, str | None]] = {}

    def place(
        self, pointer: int, version: int, number: int, languages: tuple[str, ...]
    ) -> PlaceRecord | None:
        """The place of the record at ``pointer``, which holds the address ``number``."""
        by_pointer = self._places.get(languages)
        if by_pointer is None:
            by_pointer = self._places.setdefault(languages, {})
        found = by_pointer.pop(pointer, _NOT_CACHED)
        if found is _NOT_CACHED:
            record = self.city_database.record(address_of(version, number))
            found = PlaceRecord(place_values(record, languages)) if record is not None else None
            if len(by_pointer) >= self.size:
                _forget_least_recent(by_pointer)
        by_pointer[pointer] = found  # (again): the most recently used entry comes last
        return found

    def places(
        self, pointers: list[int], samples: list[int], version: int, languages: tuple[str, ...]
    ) -> list[PlaceRecord | None]:
        """``place`` of many records at once, each with an address of it in ``samples``."""
        found = self._places.get(languages, {})
        result: list[PlaceRecord | None] = []
        append = result.append
        for pointer, sample in zip(pointers, samples, strict=True):
            place = found.pop(pointer, _NOT_CACHED)
            if place is _NOT_CACHED:
                place = self.place(pointer, version, sample, languages)
            else:
                found[pointer] = place  # the most recently used entry comes last
            append(place)
        return result

    def asn(self, pointer: int, version: int, number: int) -> tuple[int | None, str | None]:
        """``(number, organisation)`` of the ASN record at ``pointer``, which holds ``number``."""
        found = self._asns.pop(pointer, None)
        if found is None:
            found = NO_ASN
            if self.asn_database is not None:
                record = self.asn_database.record(address_of(version, number))
                if record:
                    found = _asn_values(record)
            if len(self._asns) >= self.size:
                _forget_least_recent(self._asns)
        self._asns[pointer] = found  # (again): the most recently used entry comes last
        return found


def _forget_least_recent(entries: dict[int, Any]) -> None:
    """Make room in a full cache: the least recently used ``1 / FORGET_SHARE`` of the entries
    go (each use puts its entry last, and dicts keep insertion order)."""
    for key in list(islice(entries, max(1, len(entries) // FORGET_SHARE))):
        entries.pop(key, None)  # another thread may have taken it out to put it last


def _asn_values(record: Mapping[str, Any]) -> tuple[int | None, str | None]:
    return record.get("autonomous_system_number"), record.get("autonomous_system_organization")
