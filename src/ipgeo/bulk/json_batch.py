"""The batch API's answers for plain IPv4 addresses, as JSON text, in a few C-level passes.

Per batch: the texts are parsed with ``inet_pton`` in one ``map``, reserved ranges are
checked with one ``searchsorted``, the City (and ASN) search trees are walked for all
addresses at once (``mmdbtree.IPv4Walker``). Each database record's part of the answer is
kept as a JSON template in an LRU keyed by (record pointer, fields, language) for the
database generation in service; per address only the IP and network texts are put in it.
Offset and local time come from one clock per batch. The text equals what ``orjson``
makes of the regular batch answer (``web.api.batch_answers``) for the same query; queries
this path does not answer (IPv6, names, reserved addresses, addresses without a City
record, odd spellings) are left to the regular path (``None``).
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import OrderedDict
from datetime import UTC, datetime
from functools import partial
from operator import itemgetter
from typing import Any

import numpy as np
import orjson

from ipgeo.bulk.mmdbtree import IntArray, IPv4Walker, SearchTree
from ipgeo.bulk.reserved import ReservedFilter
from ipgeo.geo import FIELDS, GeoService
from ipgeo.geo.database import MaxMindDatabase, place_from_record
from ipgeo.geo.timezones import zone_details

DEFAULT_CACHE_SIZE = 32_768  # templates of ~0.5 kB each: ~25 MB per process when full
# Per-batch values go into a record's template through these markers (orjson escapes
# control characters, so a raw NUL never occurs in its output).
_ZONE_MARKS = ("\0z", "\0s", "\0o", "\0t")  # time_zone, time_zone_source, utc_offset, local_time
_ASN_MARKS = ("\0n", "\0g")  # asn, asn_org
_MARKS = dict(
    zip(
        ("time_zone", "time_zone_source", "utc_offset", "local_time", "asn", "asn_org"),
        _ZONE_MARKS + _ASN_MARKS,
        strict=True,
    )
)
_CONSTANTS = {"version": "4", "hostname": "null", "addresses": "null"}
_SLOTS = {"ip": 0, "query": 0, "network": 1}  # per-address values: IP text, network text
_NULL_ZONE = ("null",) * 4
_pton4 = partial(socket.inet_pton, socket.AF_INET)

# A record's cached part: its template and how to find its time zone (None: it has none).
ZoneKey = tuple[str, str, float, float] | None  # (source, zone name, latitude, longitude)
Template = tuple[str, ZoneKey]


def _json(value: Any) -> str:
    """A value as JSON text, safe inside a %-template."""
    return orjson.dumps(value).decode().replace("%", "%%")


class JsonBatch:
    """Answers batches of IPv4 texts as JSON object texts (thread-safe)."""

    def __init__(self, service: GeoService, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.service = service
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._templates: OrderedDict[tuple[int, tuple[str, ...] | None, str | None], Template]
        self._templates = OrderedDict()
        self._asn_values: dict[int, tuple[str, str]] = {}
        self._generation = -1
        self._city: MaxMindDatabase | None = None
        self._asn: MaxMindDatabase | None = None
        self._walkers: tuple[IPv4Walker, IPv4Walker | None] | None = None
        spans = ReservedFilter().spans(4)
        self._reserved_exact = ReservedFilter().is_reserved_number
        self._starts = np.array(spans[0] if spans else [0], dtype=np.int64)
        self._ends = np.array(spans[1] if spans else [(1 << 32) - 1], dtype=np.int64)

    def _sync(self) -> None:
        """Follow a database reload: new trees, nothing cached from the old files."""
        self.service.refresh()
        generation = self.service.generation
        if generation == self._generation:
            return
        self._templates.clear()
        self._asn_values.clear()
        self._city, self._asn = self.service.city, self.service.asn
        self._generation = generation
        city = _walker(self._city)
        asn = _walker(self._asn) if self._asn is not None else None
        usable = city is not None and (self._asn is None or asn is not None)
        self._walkers = (city, asn) if usable and city is not None else None

    def answer(
        self, queries: list[str], fields: tuple[str, ...] | None, lang: str | None
    ) -> list[str | None]:
        """The JSON text of each query's answer, or ``None`` where the regular path answers."""
        out: list[str | None] = [None] * len(queries)
        if not queries:
            return out
        positions, numbers = _parse_ipv4(queries)
        with self._lock:
            self._sync()
            if self._walkers is None or not positions:
                return out
            city_walker, asn_walker = self._walkers
            keep = self._public(numbers)
            pointers, prefixes = city_walker.lookup(numbers)
            keep &= pointers > city_walker.tree.node_count
            if not keep.all():
                positions = [positions[i] for i in np.flatnonzero(keep).tolist()]
                numbers, pointers, prefixes = numbers[keep], pointers[keep], prefixes[keep]
            if not positions:
                return out
            keys = pointers
            if asn_walker is not None:
                asn_pointers = asn_walker.lookup(numbers)[0]
                keys = pointers << 32 | asn_pointers
            distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            texts = self._templates_for(
                distinct, numbers[first], fields or FIELDS, lang, asn_walker
            )
        if texts is None:
            return out
        chosen = np.array(texts, dtype=object)[inverse.reshape(-1)].tolist()
        _fill(out, queries, positions, chosen, numbers, prefixes, fields or FIELDS)
        return out

    def _public(self, numbers: IntArray) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """False for reserved addresses (checked exactly within the candidate ranges)."""
        index = np.searchsorted(self._starts, numbers, side="right") - 1
        candidate = (index >= 0) & (numbers <= self._ends[np.maximum(index, 0)])
        public = ~candidate
        for position in np.flatnonzero(candidate).tolist():
            public[position] = not self._reserved_exact(4, int(numbers[position]))
        return public

    def _templates_for(
        self,
        keys: IntArray,
        samples: IntArray,
        fields: tuple[str, ...],
        lang: str | None,
        asn_walker: IPv4Walker | None,
    ) -> list[str] | None:
        """The template of each distinct key with this batch's zone and ASN values put in."""
        now = datetime.now(UTC)
        zones: dict[ZoneKey, tuple[str, ...]] = {}
        wants_zone = any(name in fields for name in _MARKS if name not in ("asn", "asn_org"))
        wants_asn = "asn" in fields or "asn_org" in fields
        result: list[str] = []
        for key, sample in zip(keys.tolist(), samples.tolist(), strict=True):
            pointer = key >> 32 if asn_walker is not None else key
            found = self._template(pointer, sample, fields, lang)
            if found is None:
                return None  # a record the regular path must answer: leave the whole batch to it
            text, zone_key = found
            if wants_zone:
                values = zones.get(zone_key)
                if values is None:
                    values = zones[zone_key] = self._zone_values(zone_key, now)
                for mark, value in zip(_ZONE_MARKS, values, strict=True):
                    text = text.replace(mark, value)
            if wants_asn:
                asn_pointer = key & 0xFFFFFFFF if asn_walker is not None else -1
                for mark, value in zip(_ASN_MARKS, self._asn_of(asn_pointer, sample), strict=True):
                    text = text.replace(mark, value)
            result.append(text)
        return result

    def _template(
        self, pointer: int, sample: int, fields: tuple[str, ...], lang: str | None
    ) -> Template | None:
        cache_key = (pointer, fields, lang)
        found = self._templates.get(cache_key)
        if found is not None:
            self._templates.move_to_end(cache_key)
            return found
        assert self._city is not None
        record = self._city.record(_ipv4(sample))
        if record is None:
            return None
        place = place_from_record(record, None, self.service.languages_for(lang))
        zone_key: ZoneKey = None
        if place.time_zone:
            zone_key = ("database", place.time_zone, 0.0, 0.0)
        elif place.latitude is not None and place.longitude is not None:
            zone_key = ("polygon", "", place.latitude, place.longitude)
        pieces = []
        for name in fields:
            if name in _SLOTS:
                value = '"%s"'
            elif name in _CONSTANTS:
                value = _CONSTANTS[name]
            elif name in _MARKS:
                value = _MARKS[name]
            else:
                value = _json(getattr(place, name))
            pieces.append(f'"{name}":{value}')
        found = ("{" + ",".join(pieces) + "}", zone_key)
        self._templates[cache_key] = found
        if len(self._templates) > self.cache_size:
            self._templates.popitem(last=False)
        return found

    def _zone_values(self, zone_key: ZoneKey, now: datetime) -> tuple[str, ...]:
        """JSON texts of time_zone, time_zone_source, utc_offset, local_time (as ``lookup_ip``)."""
        if zone_key is None:
            return _NULL_ZONE
        source, name, latitude, longitude = zone_key
        if source == "polygon":
            name = self.service.timezones.locate(latitude, longitude) or ""
            if not name:
                return _NULL_ZONE
        zone = zone_details(name, source, now)
        if zone is None:
            return _NULL_ZONE
        return tuple(
            _json(value) for value in (zone.name, zone.source, zone.utc_offset, zone.local_time)
        )

    def _asn_of(self, pointer: int, sample: int) -> tuple[str, str]:
        """JSON texts of asn and asn_org (as ``GeoService.asn_of``)."""
        if self._asn is None or pointer <= self._asn.info.node_count:
            return "null", "null"
        found = self._asn_values.get(pointer)
        if found is None:
            record = self._asn.record(_ipv4(sample))
            if not record:
                return "null", "null"
            found = (
                _json(record.get("autonomous_system_number")),
                _json(record.get("autonomous_system_organization")),
            )
            if len(self._asn_values) >= self.cache_size:
                self._asn_values.clear()
            self._asn_values[pointer] = found
        return found


def _walker(database: MaxMindDatabase) -> IPv4Walker | None:
    info = database.info
    try:
        tree = SearchTree(database.path, info.node_count, info.record_size, info.ip_version)
    except (OSError, ValueError):
        return None
    return IPv4Walker(tree)


def _ipv4(number: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(number)


def _parse_ipv4(queries: list[str]) -> tuple[list[int], IntArray]:
    """Positions of the queries that are canonical dotted quads, and their integers."""
    try:
        packed = b"".join(map(_pton4, queries))
        positions = list(range(len(queries)))
    except (OSError, ValueError, TypeError):
        positions, parts = [], []
        for position, query in enumerate(queries):
            try:
                parts.append(_pton4(query))
            except (OSError, ValueError, TypeError):
                continue
            positions.append(position)
        packed = b"".join(parts)
    numbers: IntArray = np.frombuffer(packed, dtype=">u4").astype(np.int64)
    return positions, numbers


def _fill(
    out: list[str | None],
    queries: list[str],
    positions: list[int],
    templates: list[str],
    numbers: IntArray,
    prefixes: IntArray,
    fields: tuple[str, ...],
) -> None:
    """Put the per-address values into each address's template."""
    slots = [_SLOTS[name] for name in fields if name in _SLOTS]
    texts = [queries[position] for position in positions]
    if not slots:
        answers = templates
    else:
        networks: list[str] | list[None] = [None] * len(texts)
        if 1 in slots:
            masks = (0xFFFFFFFF << (32 - prefixes)) & 0xFFFFFFFF
            octets = (numbers & masks).astype(">u4").view(np.uint8).reshape(-1, 4).T.tolist()
            networks = [
                "%d.%d.%d.%d/%d" % values  # noqa: UP031 (the fastest formatting here)
                for values in zip(*octets, prefixes.tolist(), strict=True)
            ]
        if slots == [0, 0, 1]:
            answers = [
                template % (text, text, network)
                for template, text, network in zip(templates, texts, networks, strict=True)
            ]
        else:
            pick = itemgetter(*slots)
            answers = [
                template % pick((text, network))
                for template, text, network in zip(templates, texts, networks, strict=True)
            ]
    for position, answer in zip(positions, answers, strict=True):
        out[position] = answer
