"""Cached, batched lookups that give exactly the rows ``GeoService.lookup_ip`` gives.

Per batch of addresses: an LRU keyed by IP answers repeats; the rest are walked through the
search tree together (the kernel's ``TreeWalker``), each distinct database record is decoded
and mapped once (``places.Places``), and the row is assembled the way ``lookup_ip`` assembles it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections import OrderedDict
from collections.abc import Container, Iterable, Iterator
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from ipgeo.bulk.places import FIRST_PLACE, NOT_FOUND, RESERVED, PlaceRow, Places
from ipgeo.geo import FIELDS, GeoError, GeoService, LookupResult
from ipgeo.geo.addresses import (
    Address,
    IPAddress,
    ip_of,
    network_text,
    parse_address,
    v4_address,
)
from ipgeo.geo.errors import NotFound
from ipgeo.geo.tree import TreeWalker

__all__ = [
    "FIRST_PLACE",
    "NOT_FOUND",
    "RESERVED",
    "Address",
    "CachedLookup",
    "Entry",
    "IPAddress",
    "PlaceRow",
    "network_text",
    "parse_address",
]

# IPv6 batches up to this size are walked one address after the other in plain Python (after
# a table lookup of the first 16 bits); numpy walks cost per tree level, not per address.
_SINGLE_V6_WALKS = 64


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
        self._places = Places(service, service.languages_for(lang))
        self.facets = self._places.facets
        self._current = service.current()
        self.generation = self._current.number
        self.lookups = 0  # addresses that missed the cache
        self._lock = threading.Lock()

    @property
    def _tree(self) -> TreeWalker:
        return self._current.city_walker

    @property
    def _asn(self) -> bool:
        return self._current.asn_walker is not None

    def _sync(self) -> None:
        """Follow a database hot reload: drop everything cached from the old files."""
        current = self.service.current()
        if current is not self._current:
            self._current = current
            self.generation = current.number
            self._cache.clear()
            self._places.clear()

    def close(self) -> None:
        """Nothing to release: the kernel's generation owns the files."""

    def networks(self, first: IPAddress, last: IPAddress) -> Iterator[IPAddress]:
        """The first address (within ``first..last``) of every database network with a record."""
        walker = self._tree
        width = 32 if first.version == 4 else 128
        make = ipaddress.IPv4Address if first.version == 4 else ipaddress.IPv6Address
        current, end = int(first), int(last)
        while current <= end:
            pointer, prefix = walker.find(first.version, current)
            host_bits = width - prefix
            if pointer > walker.node_count:
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
        reserved = self.service.reserved.is_reserved_number
        for position, (_, version, number) in enumerate(addresses):
            if reserved(version, number):
                out[position] = self._slow(ip_of(addresses[position]))
            else:
                public[version].append(position)
        return public

    def _walk(self, version: int, numbers: list[int]) -> tuple[list[int], list[int]]:
        """Record pointers and prefix lengths of addresses of one version (a search tree)."""
        walker = self._tree
        if version == 4:
            pointers, prefixes = walker.walk_v4(np.array(numbers, dtype=np.int64))
            return pointers.tolist(), prefixes.tolist()
        if len(numbers) <= _SINGLE_V6_WALKS:
            found = [walker.find(6, number) for number in numbers]
            return [pointer for pointer, _ in found], [prefix for _, prefix in found]
        pointers, prefixes = walker.walk_v6(numbers)
        return pointers.tolist(), prefixes.tolist()

    def _lookup(self, addresses: list[Address]) -> list[Entry]:
        self.lookups += len(addresses)
        entries: list[Entry | None] = [None] * len(addresses)
        public = self._split_reserved(addresses, entries)
        for version, positions in public.items():
            if not positions:
                continue
            pointers, prefixes = self._walk(version, [addresses[at][2] for at in positions])
            for position, pointer, prefix in zip(positions, pointers, prefixes, strict=True):
                entries[position] = self._assemble(addresses[position], pointer, prefix)
        return entries  # type: ignore[return-value]

    def _slow(self, ip: IPAddress) -> Entry:
        """The reference path: ``GeoService.lookup_ip`` itself."""
        try:
            result = self.service.lookup_ip(ip, lang=self.lang)
        except GeoError as exc:
            return _error(str(ip), ip.version, exc)
        row = _row(result)
        return Entry(str(ip), row, self._places.facet_of(row), None, None)

    def _assemble(self, address: Address, pointer: int, prefix: int) -> Entry:
        key, version, number = address
        if pointer <= self._tree.node_count:
            if self._asn:
                return self._slow(ip_of(address))
            # what ``lookup_ip`` raises for a public address without a record
            return _error(key, version, NotFound(f"{key} is not in the database"))
        cached = self._places.place_of(pointer, key)
        if cached is None:
            return self._slow(ip_of(address))
        place, values, facet = cached
        zone = self._places.zone(pointer, place)
        if self._asn:
            asn, asn_org = self._current.asn_of(version, number)
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
            facet = self._places.facet_of(row)
            if asn is None:
                self._places.set_facet(pointer, place, facet)
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
            if self._asn:
                return list(self._get_many(addresses))
            result: list[Entry | tuple[int, int, PlaceRow | None] | None] = [None] * len(addresses)
            public = self._split_reserved(addresses, result)
            if self.generation != generation:
                known = ()  # the databases were swapped: the caller's pointers are stale
            node_count = self._tree.node_count
            located: list[tuple[int, int, int]] = []  # position, pointer, prefix
            fresh: dict[int, str] = {}  # new record pointers, each with an address in it
            for version, positions in public.items():
                if not positions:
                    continue
                pointers, prefixes = self._walk(version, [addresses[at][2] for at in positions])
                for position, pointer, prefix in zip(positions, pointers, prefixes, strict=True):
                    if pointer in known:
                        result[position] = (pointer, prefix, None)
                    elif pointer > node_count:
                        located.append((position, pointer, prefix))
                        if pointer not in fresh:
                            fresh[pointer] = addresses[position][0]
                    else:
                        result[position] = self._assemble(addresses[position], pointer, prefix)
            if located:
                rows, _ = self._places.record_rows(list(fresh), list(fresh.values()), now)
                for position, pointer, prefix in located:
                    row = rows.get(pointer)
                    if row is None:  # no record after all: the reference path answers
                        result[position] = self._assemble(addresses[position], pointer, prefix)
                    else:
                        result[position] = (pointer, prefix, row)
            return result  # type: ignore[return-value]

    def locate_v4(
        self,
        numbers: npt.NDArray[np.int64],
        texts: list[str],
        now: datetime,
        known: Container[int],
    ) -> tuple[list[int], list[int], dict[int, PlaceRow], dict[int, Entry]] | None:
        """``locate`` for IPv4 addresses given as integers (and as canonical texts), vectorised:
        every address's record pointer and prefix, the place rows of the pointers that are not
        in ``known``, and the ``Entry`` of every position answered otherwise (reserved, no
        record, reference path). ``None`` where ``locate`` answers with entries alone (no
        search tree, ASN data)."""
        with self._lock:
            generation = self.generation
            self._sync()
            if self._asn:
                return None
            if self.generation != generation:
                known = ()
            others: dict[int, Entry] = {}
            for position in np.flatnonzero(self.service.reserved.reserved_v4(numbers)).tolist():
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
            node_count = self._tree.node_count
            fresh = [pointer for pointer in sample if pointer not in known]
            with_record = [pointer for pointer in fresh if pointer > node_count]
            rows, failed = self._places.record_rows(
                with_record, [texts[sample[pointer]] for pointer in with_record], now
            )
            if len(with_record) < len(fresh):
                failed.extend(pointer for pointer in fresh if pointer <= node_count)
            if failed:
                failing = set(failed)
                for position, pointer in enumerate(pointers):
                    if pointer in failing and position not in others:
                        address = v4_address(int(numbers[position]))
                        others[position] = self._assemble(address, pointer, prefixes[position])
            return pointers, prefixes, rows, others


def _error(key: str, version: int, exc: GeoError) -> Entry:
    row = (key, key, version) + (None,) * (len(FIELDS) - 3)
    facet = RESERVED if exc.code == "reserved_address" else NOT_FOUND
    return Entry(key, row, facet, exc.code, exc.message)


def _row(result: LookupResult) -> tuple[Any, ...]:
    return tuple(getattr(result, name) for name in FIELDS)
