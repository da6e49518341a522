"""Per-record memory of a ``CachedLookup``: decoded places, time zones and summary facets.

Every City record (by its pointer in the database file) is decoded and mapped to its place
values once (by ``place_values``, what ``GeoService.place`` does minus the network); its time
zone name (from the record, or found from polygons) is memoised with it. Summary facets (the
values the summary counts by) get small integer ids.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ipgeo.geo import FIELDS, GeoService
from ipgeo.geo.addresses import IPAddress
from ipgeo.geo.database import PLACE_VALUES, place_values
from ipgeo.geo.models import TimeZoneInfo
from ipgeo.geo.timezones import zone_details

# a record's place values, those before the zone fields, and its summary facet (-1: not yet)
CachedPlace = tuple[tuple[Any, ...], tuple[Any, ...], int]
# The columns ``continent`` … ``local_time`` of one record, and its facet id.
PlaceRow = tuple[tuple[Any, ...], int]

# Facet ids of rows without a location; located rows get ids from ``FIRST_PLACE``.
RESERVED, NOT_FOUND, FIRST_PLACE = 0, 1, 2
PLACE_CACHE_SIZE = 16_384
_FIXED_ZONES_SIZE = 4096
_FACET_FIELDS = (
    "country_iso", "country", "region_code", "region", "city", "asn", "asn_org", "time_zone",
)  # fmt: skip
_FACET_POSITIONS = tuple(FIELDS.index(name) for name in _FACET_FIELDS)
# ``place_values`` columns: ``FIELDS`` from continent to accuracy_radius_km, then time_zone
_ZONE_AT = PLACE_VALUES.index("time_zone")
_LATITUDE_AT, _LONGITUDE_AT = PLACE_VALUES.index("latitude"), PLACE_VALUES.index("longitude")
assert PLACE_VALUES[:_ZONE_AT] == FIELDS[FIELDS.index("continent") : FIELDS.index("time_zone")]
# positions of the facet fields before the ASN ones in ``place_values``' columns
_COUNTRY_ISO, _COUNTRY, _REGION_CODE, _REGION, _CITY = (
    PLACE_VALUES.index(name) for name in _FACET_FIELDS[:5]
)
assert _FACET_FIELDS[5:] == ("asn", "asn_org", "time_zone")
_NO_ZONE = (None, None, None, None)


class Places:
    """Decoded records, their zones and the facet ids of one ``CachedLookup``."""

    def __init__(self, service: GeoService, languages: tuple[str, ...]) -> None:
        self.service = service
        self.languages = languages
        self._places: dict[int, CachedPlace] = {}
        self._zones: dict[tuple[str, str], tuple[int, TimeZoneInfo | None]] = {}
        self._zone_names: dict[int, tuple[str, str]] = {}
        # zone details at one fixed moment, by (name, source, moment)
        self._fixed_zones: dict[tuple[str, str, datetime], tuple[Any, ...]] = {}
        self.facets: list[tuple[Any, ...]] = [(), ()]
        self._facet_ids: dict[tuple[Any, ...], int] = {}

    def clear(self) -> None:
        """Forget the records (the database files changed); facet ids stay."""
        self._places.clear()
        self._zone_names.clear()

    def place_of(self, pointer: int, ip: IPAddress | str) -> CachedPlace | None:
        """The cached (place, values, facet) of the record at ``pointer`` that ``ip`` is in,
        decoded and mapped on first sight; ``None`` when the database has no record for it."""
        cached = self._places.get(pointer)
        if cached is None:
            record = self.service.city.record(ip)
            if record is None:
                return None
            place = place_values(record, self.languages)
            if len(self._places) >= PLACE_CACHE_SIZE:
                self.clear()
            self._places[pointer] = cached = (place, place[:_ZONE_AT], -1)
        return cached

    def set_facet(self, pointer: int, place: tuple[Any, ...], facet: int) -> None:
        """Remember the facet id of the record at ``pointer``."""
        self._places[pointer] = (place, place[:_ZONE_AT], facet)

    def record_rows(
        self, pointers: list[int], texts: list[str], now: datetime
    ) -> tuple[dict[int, PlaceRow], list[int]]:
        """The place rows (``place_row`` at ``now``) of the records at ``pointers``, each
        found by the IP text at the same position, decoding and mapping them if needed; and
        the pointers the database has no record for (the reference path answers those)."""
        rows: dict[int, PlaceRow] = {}
        failed: list[int] = []
        places, zone_names, fixed_zones = self._places, self._zone_names, self._fixed_zones
        record_of, languages, facet_ids = self.service.city.record, self.languages, self._facet_ids
        for pointer, text in zip(pointers, texts, strict=True):
            cached = places.get(pointer)
            if cached is None:
                record = record_of(text)
                if record is None:
                    failed.append(pointer)
                    continue
                place = place_values(record, languages)
                if len(places) >= PLACE_CACHE_SIZE:
                    self.clear()
                values = place[:_ZONE_AT]
                facet = -1
            else:
                place, values, facet = cached
            named = zone_names.get(pointer) or self._zone_name(pointer, place)
            if named[0]:
                zone = fixed_zones.get((*named, now)) or self._fixed_zone(named, now)
            else:
                zone = _NO_ZONE
            if facet < 0:
                # the facet ``_assemble`` finds (the zone name is the same at every moment)
                key = (
                    place[_COUNTRY_ISO],
                    place[_COUNTRY],
                    place[_REGION_CODE],
                    place[_REGION],
                    place[_CITY],
                    None,
                    None,
                    zone[0],
                )
                facet = facet_ids.get(key, -1)
                if facet < 0:
                    facet = self.facet_id(key)
                places[pointer] = (place, values, facet)
            rows[pointer] = ((*values, *zone), facet)
        return rows, failed

    def place_row(self, pointer: int, now: datetime) -> PlaceRow:
        """The columns ``continent`` … ``local_time`` (zone at ``now``) of a cached record."""
        _, values, facet = self._places[pointer]
        named = self._zone_names[pointer]
        zone = self._fixed_zone(named, now) if named[0] else _NO_ZONE
        return (*values, *zone), facet

    def _fixed_zone(self, named: tuple[str, str], now: datetime) -> tuple[Any, ...]:
        """Name, source, offset and local time of a zone at ``now``, memoised."""
        key = (*named, now)
        zone = self._fixed_zones.get(key)
        if zone is None:
            if len(self._fixed_zones) > _FIXED_ZONES_SIZE:
                self._fixed_zones.clear()
            details = zone_details(named[0], named[1], now)
            zone = self._fixed_zones[key] = (
                _NO_ZONE
                if details is None
                else (details.name, details.source, details.utc_offset, details.local_time)
            )
        return zone

    def zone(self, key: int, place: tuple[Any, ...]) -> TimeZoneInfo | None:
        """The zone details of record ``key`` now (memoised per zone and second)."""
        # ``lookup_ip`` computes offset and local time at call time; within one second of
        # wall-clock time the answer is the same, so details are memoised per zone and second
        # (the zone name of a record, found from polygons when needed, never changes).
        second = int(time.time())
        named = self._zone_name(key, place)
        if not named[0]:
            return None
        cached = self._zones.get(named)
        if cached is None or cached[0] != second:
            cached = self._zones[named] = (second, zone_details(named[0], named[1]))
        return cached[1]

    def _zone_name(self, key: int, place: tuple[Any, ...]) -> tuple[str, str]:
        """The zone name (``""`` for none) and its source of the record ``key``, memoised."""
        named = self._zone_names.get(key)
        if named is None:
            name, source = place[_ZONE_AT], "database"
            latitude, longitude = place[_LATITUDE_AT], place[_LONGITUDE_AT]
            if not name and latitude is not None and longitude is not None:
                name, source = self.service.timezones.locate(latitude, longitude), "polygon"
            self._zone_names[key] = named = (name or "", source)
        return named

    def facet_of(self, row: tuple[Any, ...]) -> int:
        """The facet id of a row aligned with ``FIELDS``."""
        return self.facet_id(tuple(row[position] for position in _FACET_POSITIONS))

    def facet_id(self, facet: tuple[Any, ...]) -> int:
        """The id of a facet (its values of ``_FACET_FIELDS``), new ones numbered in order."""
        found = self._facet_ids.get(facet)
        if found is None:
            found = len(self.facets)
            self._facet_ids[facet] = found
            self.facets.append(facet)
        return found
