"""Cached, batched lookups that give exactly the rows ``GeoService.lookup_ip`` gives.

Per batch of addresses: an LRU keyed by IP answers repeats; the rest are walked through the
search tree together (``mmdbtree``), each distinct database record is decoded and mapped once
(by ``GeoService.place``), and the row is assembled the way ``lookup_ip`` assembles it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Container, Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.reserved import ReservedFilter
from ipgeo.geo import FIELDS, GeoError, GeoService, LookupResult
from ipgeo.geo.database import PLACE_VALUES, place_values
from ipgeo.geo.errors import NotFound
from ipgeo.geo.mmdbtree import SearchTree
from ipgeo.geo.models import TimeZoneInfo
from ipgeo.geo.queries import parse_ip
from ipgeo.geo.timezones import zone_details

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# a record's place values, those before the zone fields, and its summary facet (-1: not yet)
CachedPlace = tuple[tuple[Any, ...], tuple[Any, ...], int]
Address = tuple[str, int, int]  # canonical text, version, integer value
# The columns ``continent`` … ``local_time`` of one record, and its facet id.
PlaceRow = tuple[tuple[Any, ...], int]

# Facet ids of rows without a location; located rows get ids from ``FIRST_PLACE``.
RESERVED, NOT_FOUND, FIRST_PLACE = 0, 1, 2
PLACE_CACHE_SIZE = 16_384
_FACET_FIELDS = (
    "country_iso", "country", "region_code", "region", "city", "asn", "asn_org", "time_zone",
)  # fmt: skip
_FACET_POSITIONS = tuple(FIELDS.index(name) for name in _FACET_FIELDS)
# positions of the facet fields in a ``PlaceRow``'s columns (-1: ASN columns, never there)
_ROW_FACET = tuple(
    FIELDS.index(name) - FIELDS.index("continent") if name not in ("asn", "asn_org") else -1
    for name in _FACET_FIELDS
)
# ``place_values`` columns: ``FIELDS`` from continent to accuracy_radius_km, then time_zone
_ZONE_AT = PLACE_VALUES.index("time_zone")
_LATITUDE_AT, _LONGITUDE_AT = PLACE_VALUES.index("latitude"), PLACE_VALUES.index("longitude")
assert PLACE_VALUES[:_ZONE_AT] == FIELDS[FIELDS.index("continent") : FIELDS.index("time_zone")]


class Entry:
    """The answer for one IP: a row aligned with ``FIELDS``, or an error code and message."""

    __slots__ = ("error", "facet", "key", "message", "place_key", "row")

    def __init__(
        self, key: str, row: tuple[Any, ...], facet: int, error: str | None, message: str | None
    ) -> None:
        self.key = key
        self.row = row
        self.facet = facet
        self.error = error
        self.message = message
        # Entries with the same ``place_key`` have equal values from ``continent`` through
        # ``time_zone_source`` (one database record), which writers may render once.
        self.place_key: int | None = None

    def as_dict(self, fields: Iterable[str] | None = None) -> dict[str, Any]:
        """The row as a mapping (``FIELDS`` or the selected ones)."""
        values = dict(zip(FIELDS, self.row, strict=True))
        return values if fields is None else {name: values[name] for name in fields}


class CachedLookup:
    """Looks up many IPs with an LRU cache and per-record memoisation."""

    def __init__(self, service: GeoService, lang: str | None = None, cache_size: int = 65_536):
        self.service = service
        self.lang = lang
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Entry] = OrderedDict()
        self._reserved = ReservedFilter()
        self._places: dict[int, CachedPlace] = {}
        self._zones: dict[tuple[str, str], tuple[int, TimeZoneInfo | None]] = {}
        self._zone_names: dict[int, tuple[str, str]] = {}
        # zone details at one fixed moment, by (name, source, moment)
        self._fixed_zones: dict[tuple[str, str, datetime], tuple[Any, ...]] = {}
        self.facets: list[tuple[Any, ...]] = [(), ()]
        self._facet_ids: dict[tuple[Any, ...], int] = {}
        self._tree = self._open_tree()
        self.generation = _generation(service)
        self._languages = service.languages_for(lang)
        self._asn = service.asn is not None
        self.lookups = 0  # addresses that missed the cache
        self._lock = threading.Lock()

    def _open_tree(self) -> SearchTree | None:
        info = self.service.city.info
        try:
            return SearchTree(
                self.service.city.path, info.node_count, info.record_size, info.ip_version
            )
        except (OSError, ValueError):
            return None  # every lookup then takes the reference path

    def _sync(self) -> None:
        """Follow a database hot reload: drop everything cached from the old files."""
        refresh = getattr(self.service, "refresh", None)
        if callable(refresh):
            refresh()
        generation = _generation(self.service)
        if generation != self.generation:
            self.generation = generation
            self._cache.clear()
            self._places.clear()
            self._zone_names.clear()
            if self._tree is not None:
                self._tree.close()
            self._tree = self._open_tree()

    def close(self) -> None:
        """Release the memory-mapped search tree."""
        if self._tree is not None:
            self._tree.close()
            self._tree = None

    def networks(self, first: IPAddress, last: IPAddress) -> Iterator[IPAddress]:
        """The first address (within ``first..last``) of every database network with a record."""
        if self._tree is None:
            raise BulkError("CIDR and range inputs need a MaxMind-format database file")
        width = 32 if first.version == 4 else 128
        walk = self._tree.lookup_v4 if first.version == 4 else self._tree.lookup_v6
        make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
        current, end = int(first), int(last)
        while current <= end:
            pointers, prefixes = walk([current])
            host_bits = width - prefixes[0]
            if self._tree.has_record(pointers[0]):
                yield make(current)
            if host_bits >= width:
                break
            current = ((current >> host_bits) + 1) << host_bits

    def get(self, ip: IPAddress) -> Entry:
        """The entry of one IP (cached)."""
        return self.get_many([ip])[0]

    def get_many(self, ips: list[IPAddress]) -> list[Entry]:
        """Entries for ``ips`` in order; misses are looked up together (thread-safe)."""
        addresses: list[Address] = [(str(ip), ip.version, int(ip)) for ip in ips]
        with self._lock:
            self._sync()
            return self._get_many(addresses)

    def get_texts(self, texts: list[str]) -> list[Entry | None]:
        """Entries for IP addresses as text (``None`` where a text is not an IP address)."""
        addresses: list[Address] = []
        positions: list[int] = []
        for position, text in enumerate(texts):
            address = parse_address(text)
            if address is not None:
                addresses.append(address)
                positions.append(position)
        result: list[Entry | None] = [None] * len(texts)
        with self._lock:
            self._sync()
            for position, entry in zip(positions, self._get_many(addresses), strict=True):
                result[position] = entry
        return result

    def _get_many(self, addresses: list[Address]) -> list[Entry]:
        cache = self._cache
        result: list[Entry | None] = []
        missing: dict[str, list[int]] = {}
        missing_addresses: list[Address] = []
        for position, address in enumerate(addresses):
            key = address[0]
            entry = cache.get(key)
            if entry is not None:
                cache.move_to_end(key)
                result.append(entry)
                continue
            result.append(None)
            slots = missing.get(key)
            if slots is None:
                missing[key] = [position]
                missing_addresses.append(address)
            else:
                slots.append(position)
        if missing_addresses:
            for entry in self._lookup(missing_addresses):
                for position in missing[entry.key]:
                    result[position] = entry
                cache[entry.key] = entry
            while len(cache) > self.cache_size:
                cache.popitem(last=False)
        return result  # type: ignore[return-value]

    def _split_reserved(self, addresses: list[Address], out: list[Any]) -> dict[int, list[int]]:
        """Answer reserved addresses into ``out``; return the other positions by IP version."""
        public: dict[int, list[int]] = {4: [], 6: []}
        reserved = self._reserved.is_reserved_number
        for position, (_, version, number) in enumerate(addresses):
            if reserved(version, number):
                out[position] = self._slow(_ip_of(addresses[position]))
            else:
                public[version].append(position)
        return public

    def _lookup(self, addresses: list[Address]) -> list[Entry]:
        self.lookups += len(addresses)
        if self._tree is None:
            return [self._slow(_ip_of(address)) for address in addresses]
        entries: list[Entry | None] = [None] * len(addresses)
        public = self._split_reserved(addresses, entries)
        for version, positions in public.items():
            if not positions:
                continue
            walk = self._tree.lookup_v4 if version == 4 else self._tree.lookup_v6
            pointers, prefixes = walk([addresses[position][2] for position in positions])
            for position, pointer, prefix in zip(positions, pointers, prefixes, strict=True):
                entries[position] = self._assemble(addresses[position], pointer, prefix)
        return entries  # type: ignore[return-value]

    def _slow(self, ip: IPAddress) -> Entry:
        """The reference path: ``GeoService.lookup_ip`` itself."""
        try:
            result = self.service.lookup_ip(ip, lang=self.lang)
        except GeoError as exc:
            return self._error(ip, exc)
        return Entry(str(ip), _row(result), self._facet(result), None, None)

    def _error(self, ip: IPAddress, exc: GeoError) -> Entry:
        key = str(ip)
        row = (key, key, ip.version) + (None,) * (len(FIELDS) - 3)
        facet = RESERVED if exc.code == "reserved_address" else NOT_FOUND
        return Entry(key, row, facet, exc.code, exc.message)

    def _assemble(self, address: Address, pointer: int, prefix: int) -> Entry:
        assert self._tree is not None
        if not self._tree.has_record(pointer):
            ip = _ip_of(address)
            if self._asn:
                return self._slow(ip)
            # what ``lookup_ip`` raises for a public address without a record
            return self._error(ip, NotFound(f"{ip} is not in the database"))
        key, version, number = address
        cached = self._place_of(pointer, _ip_of(address))
        if cached is None:
            return self._slow(_ip_of(address))
        place, values, facet = cached
        zone = self._zone(pointer, place)
        if self._asn:
            asn, asn_org = self.service.asn_of(_ip_of(address))
        else:
            asn, asn_org = None, None
        network = network_text(version, number, prefix)
        if zone is None:
            row = (key, key, version, network, None, *values, None, None, None, None, asn, asn_org)
        else:
            row = (
                key,
                key,
                version,
                network,
                None,
                *values,
                zone.name,
                zone.source,
                zone.utc_offset,
                zone.local_time,
                asn,
                asn_org,
            )
        if facet < 0 or asn is not None:
            facet = self._facet_of(row)
            if asn is None:
                self._places[pointer] = (place, values, facet)
        entry = Entry(key, row, facet, None, None)
        entry.place_key = pointer
        return entry

    def locate(
        self, addresses: list[Address], now: datetime, known: Container[int]
    ) -> list[Entry | tuple[int, int, PlaceRow | None]]:
        """For the bulk engine: ``(record pointer, prefix, place row)`` of each address whose
        columns ``continent`` … ``local_time`` come from one City record alone, else the
        ``Entry``. The place row (with offset and local time at ``now``, and the facet id) is
        ``None`` for pointers in ``known``. No LRU; used only without an ASN database (with
        one, the ASN columns vary per address).
        """
        with self._lock:
            generation = self.generation
            self._sync()
            if self._tree is None or self._asn:
                return list(self._get_many(addresses))
            result: list[Entry | tuple[int, int, PlaceRow | None] | None] = [None] * len(addresses)
            public = self._split_reserved(addresses, result)
            if self.generation != generation:
                known = ()  # the databases were swapped: the caller's pointers are stale
            rows: dict[int, PlaceRow] = {}
            for version, positions in public.items():
                if not positions:
                    continue
                walk = self._tree.lookup_v4 if version == 4 else self._tree.lookup_v6
                pointers, prefixes = walk([addresses[position][2] for position in positions])
                for position, pointer, prefix in zip(positions, pointers, prefixes, strict=True):
                    if pointer in known:
                        result[position] = (pointer, prefix, None)
                        continue
                    row = rows.get(pointer)
                    if row is None:
                        entry = self._assemble(addresses[position], pointer, prefix)
                        if entry.place_key is None:
                            result[position] = entry  # the reference path answered
                            continue
                        row = rows[pointer] = self._place_row(pointer, now)
                    result[position] = (pointer, prefix, row)
            return result  # type: ignore[return-value]

    def locate_v4(
        self, numbers: npt.NDArray[np.int64], now: datetime, known: Container[int]
    ) -> tuple[list[int], list[int], dict[int, PlaceRow], dict[int, Entry]] | None:
        """``locate`` for IPv4 addresses given as integers, vectorised: every address's record
        pointer and prefix, the place rows of the pointers that are not in ``known``, and the
        ``Entry`` of every position answered otherwise (reserved, no record, reference path).
        ``None`` where ``locate`` answers with entries alone (no search tree, ASN data)."""
        with self._lock:
            generation = self.generation
            self._sync()
            if self._tree is None or self._asn:
                return None
            if self.generation != generation:
                known = ()
            others: dict[int, Entry] = {}
            for position in np.flatnonzero(self._reserved.reserved_v4(numbers)).tolist():
                others[position] = self._slow(ipaddress.IPv4Address(int(numbers[position])))
            pointer_array, prefix_array = self._tree.walk_v4(numbers)
            pointers: list[int] = pointer_array.tolist()
            prefixes: list[int] = prefix_array.tolist()
            self.lookups += len(pointers)
            # one position per pointer (its last), reserved positions left out
            sample = dict(zip(pointers, range(len(pointers)), strict=True))
            if others:
                sample = {}
                for position, pointer in enumerate(pointers):
                    if position not in others:
                        sample[pointer] = position
            rows: dict[int, PlaceRow] = {}
            failed: set[int] = set()
            node_count = self._tree.node_count
            for pointer, position in sample.items():
                if pointer in known:
                    continue
                if pointer > node_count:
                    row = self._record_row(pointer, int(numbers[position]), now)
                    if row is not None:
                        rows[pointer] = row
                        continue
                failed.add(pointer)  # no record, or the reference path answers
            if failed:
                for position, pointer in enumerate(pointers):
                    if pointer in failed and position not in others:
                        address = _v4(int(numbers[position]))
                        others[position] = self._assemble(address, pointer, prefixes[position])
            return pointers, prefixes, rows, others

    def _place_of(self, pointer: int, ip: IPAddress) -> CachedPlace | None:
        """The cached (place, values, facet) of the record at ``pointer`` that ``ip`` is in,
        decoded and mapped on first sight; ``None`` when the database has no record for it."""
        cached = self._places.get(pointer)
        if cached is None:
            record = self.service.city.record(ip)
            if record is None:
                return None
            # what ``GeoService.place`` does, minus the network it computes and we do not need
            place = place_values(record, self._languages)
            if len(self._places) >= PLACE_CACHE_SIZE:
                self._places.clear()
                self._zone_names.clear()
            self._places[pointer] = cached = (place, place[:_ZONE_AT], -1)
        return cached

    def _record_row(self, pointer: int, number: int, now: datetime) -> PlaceRow | None:
        """``_place_row`` of the record at ``pointer`` (of IPv4 ``number``), decoding and mapping
        it if needed; ``None`` when the reference path must answer (no ASN database here)."""
        cached = self._place_of(pointer, ipaddress.IPv4Address(number))
        if cached is None:
            return None
        place, values, facet = cached
        self._zone_name(pointer, place)
        row, _ = self._place_row(pointer, now)
        if facet < 0:
            # the facet ``_assemble`` finds (the zone name is the same at every moment)
            facet = self._facet_id(tuple(None if at < 0 else row[at] for at in _ROW_FACET))
            self._places[pointer] = (place, values, facet)
        return row, facet

    def _place_row(self, pointer: int, now: datetime) -> PlaceRow:
        _, values, facet = self._places[pointer]
        name, source = self._zone_names[pointer]
        if not name:
            return (*values, None, None, None, None), facet
        key = (name, source, now)
        zone = self._fixed_zones.get(key)
        if zone is None:
            if len(self._fixed_zones) > 4096:
                self._fixed_zones.clear()
            details = zone_details(name, source, now)
            zone = self._fixed_zones[key] = (
                (None, None, None, None)
                if details is None
                else (details.name, details.source, details.utc_offset, details.local_time)
            )
        return (*values, *zone), facet

    def _zone(self, key: int, place: tuple[Any, ...]) -> TimeZoneInfo | None:
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

    def _facet(self, result: LookupResult) -> int:
        return self._facet_of(_row(result))

    def _facet_of(self, row: tuple[Any, ...]) -> int:
        return self._facet_id(tuple(row[position] for position in _FACET_POSITIONS))

    def _facet_id(self, facet: tuple[Any, ...]) -> int:
        found = self._facet_ids.get(facet)
        if found is None:
            found = len(self.facets)
            self._facet_ids[facet] = found
            self.facets.append(facet)
        return found


def parse_address(text: str) -> Address | None:
    """``(canonical text, version, integer)`` of an IP address, or ``None``; like ``parse_ip``."""
    try:
        # inet_pton accepts exactly the canonical dotted quads ipaddress accepts
        number = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        ip = parse_ip(text)
        return None if ip is None else (str(ip), ip.version, int(ip))
    except (ValueError, TypeError):
        return None
    return text, 4, number


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
    return f"{ipaddress.IPv6Address(network_number)}/{prefix}"


def _generation(service: GeoService) -> int:
    """The service's database generation (services that reload files count their swaps)."""
    generation = getattr(service, "generation", 0)
    return generation if isinstance(generation, int) else 0


def _v4(number: int) -> Address:
    return str(ipaddress.IPv4Address(number)), 4, number


def _ip_of(address: Address) -> IPAddress:
    if address[1] == 4:
        return ipaddress.IPv4Address(address[2])
    return ipaddress.IPv6Address(address[2])


def _row(result: LookupResult) -> tuple[Any, ...]:
    return tuple(getattr(result, name) for name in FIELDS)
