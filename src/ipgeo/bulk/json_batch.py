"""The batch API's answers for plain IPv4 addresses, as JSON text, in a few C-level passes.

Per batch: the texts are parsed with ``inet_pton`` in one ``map``, reserved ranges are
checked with one ``searchsorted``, the City (and ASN) search trees are walked for all
addresses at once (``mmdbtree.IPv4Walker``). Each database record's part of the answer is
kept as a JSON template in an LRU keyed by (record pointer, fields, language) for the
database generation in service; per batch the zone and ASN values go into the templates
of its distinct records (offset and local time from one clock per batch), then per address
its IP text and network (one ``%`` each). The result equals what ``orjson`` makes of the
regular batch answer (``web.api.batch_answers``) for the same query; queries this path
does not answer (IPv6, names, reserved addresses, addresses without a City record, odd
spellings) are left to the regular path (``None``).
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
import numpy.typing as npt
import orjson

from ipgeo.bulk.reserved import ReservedFilter
from ipgeo.geo import FIELDS, GeoService
from ipgeo.geo.database import MaxMindDatabase, place_from_record
from ipgeo.geo.mmdbtree import IntArray, IPv4Walker, SearchTree
from ipgeo.geo.timezones import zone_details

# Uniformly random addresses touch ~130,000 records per million; real traffic far fewer.
DEFAULT_CACHE_SIZE = 65_536  # ~0.8 kB per entry: ~50 MB per process when full
# A record's template is formatted twice: once per batch with the values of the fields in
# ``_MARKED`` (``%s``), then per address with its IP text and network (``%%s``, ``%%d``).
_MARKED = ("time_zone", "time_zone_source", "utc_offset", "local_time", "asn", "asn_org")
_SLOTS = {"ip": b'"%%s"', "query": b'"%%s"', "network": b'"%%d.%%d.%%d.%%d/%%d"'}
_CONSTANTS: dict[str, Any] = {"version": 4, "hostname": None, "addresses": None}
# Stand-ins while the template is serialized (orjson escapes a NUL as ``\u0000``).
_SLOT, _MARK = "\0slot", "\0mark"
_SLOT_JSON, _MARK_JSON = b'"\\u0000slot"', b'"\\u0000mark"'
_NULL_ZONE = (b"null",) * 4
_NULL_ASN = (b"null",) * 2
_pton4 = partial(socket.inet_pton, socket.AF_INET)

# A record's cached part: its template and how to find its time zone (None: it has none).
ZoneKey = tuple[str, str, float, float] | None  # (source, zone name, latitude, longitude)
Template = tuple[bytes, ZoneKey]


def _json(value: Any) -> bytes:
    """A value as JSON, safe inside a %-template."""
    return orjson.dumps(value).replace(b"%", b"%%")


class JsonBatch:
    """Answers batches of IPv4 texts as JSON object texts (thread-safe)."""

    def __init__(self, service: GeoService, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.service = service
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._templates: OrderedDict[tuple[int, tuple[str, ...] | None, str | None], Template]
        self._templates = OrderedDict()
        self._asn_values: dict[int, tuple[bytes, bytes]] = {}
        self._zone_keys: dict[ZoneKey, ZoneKey] = {}
        self._generation = -1
        self._city: MaxMindDatabase | None = None
        self._asn: MaxMindDatabase | None = None
        self._walkers: tuple[IPv4Walker, IPv4Walker | None] | None = None
        self._reserved = ReservedFilter()
        self._zone_cache: dict[ZoneKey, tuple[int, tuple[bytes, ...]]] = {}

    def _sync(self) -> None:
        """Follow a database reload: new trees, nothing cached from the old files."""
        self.service.refresh()
        generation = self.service.generation
        if generation == self._generation:
            return
        self._templates.clear()
        self._asn_values.clear()
        self._zone_keys.clear()
        for walker in self._walkers or ():
            if walker is not None:
                walker.tree.close()
        self._city, self._asn = self.service.city, self.service.asn
        self._generation = generation
        city = _walker(self._city)
        asn = _walker(self._asn) if self._asn is not None else None
        usable = city is not None and (self._asn is None or asn is not None)
        self._walkers = (city, asn) if usable and city is not None else None

    def answer(
        self, queries: list[str], fields: tuple[str, ...] | None, lang: str | None
    ) -> list[bytes | None]:
        """The JSON of each query's answer, or ``None`` where the regular path answers."""
        out: list[bytes | None] = [None] * len(queries)
        if not queries or self.service.reverse_dns:  # hostnames: the regular path
            return out
        positions, numbers = _parse_ipv4(queries)
        with self._lock:
            self._sync()
            if self._walkers is None or not positions:
                return out
            city_walker, asn_walker = self._walkers
            keep = ~self._reserved.reserved_v4(numbers)
            pointers, prefixes = city_walker.lookup(numbers)
            keep &= pointers > city_walker.tree.node_count
            if not keep.all():
                positions = [positions[i] for i in np.flatnonzero(keep).tolist()]
                numbers, pointers, prefixes = numbers[keep], pointers[keep], prefixes[keep]
            if not positions:
                return out
            keys: npt.NDArray[np.integer[Any]] = pointers
            if asn_walker is not None:  # both pointers in one key (each below 2**32)
                asn_pointers = asn_walker.lookup(numbers)[0].astype(np.uint64)
                keys = pointers.astype(np.uint64) << np.uint64(32) | asn_pointers
            distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
            texts = self._templates_for(
                distinct, numbers[first], fields or FIELDS, lang, asn_walker
            )
        if texts is None:
            return out
        chosen = np.array(texts, dtype=object)[inverse.reshape(-1)].tolist()
        _fill(out, queries, positions, chosen, numbers, prefixes, fields or FIELDS)
        return out

    def _templates_for(
        self,
        keys: npt.NDArray[np.integer[Any]],
        samples: IntArray,
        fields: tuple[str, ...],
        lang: str | None,
        asn_walker: IPv4Walker | None,
    ) -> list[bytes] | None:
        """The template of each distinct key with this batch's zone and ASN values put in."""
        now = datetime.now(UTC)
        second = int(now.timestamp())
        zones: dict[ZoneKey, tuple[bytes, ...]] = {}
        marks = [_MARKED.index(name) for name in fields if name in _MARKED]
        pick = itemgetter(*marks) if marks else None
        cached = self._templates
        result: list[bytes] = []
        for key, sample in zip(keys.tolist(), samples.tolist(), strict=True):
            pointer = key >> 32 if asn_walker is not None else key
            cache_key = (pointer, fields, lang)
            found = cached.get(cache_key)
            if found is None:
                found = self._template(cache_key, sample)
                if found is None:
                    return None  # a record the regular path must answer: leave it the batch
            else:
                cached.move_to_end(cache_key)
            text, zone_key = found
            if pick is None:
                result.append(text % ())
                continue
            values = zones.get(zone_key)
            if values is None:
                values = zones[zone_key] = self._zone_values(zone_key, now, second)
            if asn_walker is not None:
                values += self._asn_of(key & 0xFFFFFFFF, sample)
            else:
                values += _NULL_ASN
            result.append(text % pick(values))
        return result

    def _template(
        self, cache_key: tuple[int, tuple[str, ...], str | None], sample: int
    ) -> Template | None:
        """Make and remember the template of a record (``None``: the regular path answers)."""
        assert self._city is not None
        _, fields, lang = cache_key
        record = self._city.record(_ipv4(sample))
        if record is None:
            return None
        place = place_from_record(record, None, self.service.languages_for(lang))
        zone_key: ZoneKey = None
        if place.time_zone:
            zone_key = ("database", place.time_zone, 0.0, 0.0)
        elif place.latitude is not None and place.longitude is not None:
            zone_key = ("polygon", "", place.latitude, place.longitude)
        row = {
            name: _SLOT
            if name in _SLOTS
            else _MARK
            if name in _MARKED
            else _CONSTANTS[name]
            if name in _CONSTANTS
            else getattr(place, name)
            for name in fields
        }
        text = orjson.dumps(row).replace(b"%", b"%%%%").replace(_MARK_JSON, b"%s")
        pieces = text.split(_SLOT_JSON)
        slots = iter([_SLOTS[name] for name in fields if name in _SLOTS])
        text = pieces[0] + b"".join(next(slots) + piece for piece in pieces[1:])
        found = (text, self._zone_keys.setdefault(zone_key, zone_key))  # one copy per zone
        self._templates[cache_key] = found
        if len(self._templates) > self.cache_size:
            self._templates.popitem(last=False)
        return found

    def _zone_values(self, zone_key: ZoneKey, now: datetime, second: int) -> tuple[bytes, ...]:
        """JSON of time_zone, time_zone_source, utc_offset, local_time (as ``lookup_ip``)."""
        if zone_key is None:
            return _NULL_ZONE
        source, name, latitude, longitude = zone_key
        if source == "database":
            # The same within one second of UTC (zone offsets are whole seconds); polygon
            # zones are looked up again per batch, as the locator's state may change.
            cached = self._zone_cache.get(zone_key)
            if cached is None or cached[0] != second:
                if len(self._zone_cache) > 4096:
                    self._zone_cache.clear()
                cached = self._zone_cache[zone_key] = (second, _zone_json(name, source, now))
            return cached[1]
        name = self.service.timezones.locate(latitude, longitude) or ""
        return _zone_json(name, source, now) if name else _NULL_ZONE

    def _asn_of(self, pointer: int, sample: int) -> tuple[bytes, bytes]:
        """JSON texts of asn and asn_org (as ``GeoService.asn_of``)."""
        if self._asn is None or pointer <= self._asn.info.node_count:
            return _NULL_ASN
        found = self._asn_values.get(pointer)
        if found is None:
            record = self._asn.record(_ipv4(sample))
            if not record:
                return _NULL_ASN
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
    out: list[bytes | None],
    queries: list[str],
    positions: list[int],
    templates: list[bytes],
    numbers: IntArray,
    prefixes: IntArray,
    fields: tuple[str, ...],
) -> None:
    """Put the per-address values (IP text, network) into each address's template."""
    columns: list[list[Any]] = []
    texts: list[bytes] = []
    octets: list[list[int]] = []
    for name in fields:
        if name in ("ip", "query"):
            texts = texts or [queries[position].encode() for position in positions]
            columns.append(texts)
        elif name == "network":
            if not octets:
                masks = (0xFFFFFFFF << (32 - prefixes)) & 0xFFFFFFFF
                network = (numbers & masks).astype(">u4").view(np.uint8).reshape(-1, 4).T
                octets = [*network.tolist(), prefixes.tolist()]
            columns.extend(octets)
    if columns:
        answers = [
            template % values
            for template, values in zip(templates, zip(*columns, strict=True), strict=True)
        ]
    else:
        answers = [template % () for template in templates]
    for position, answer in zip(positions, answers, strict=True):
        out[position] = answer


def _zone_json(name: str, source: str, now: datetime) -> tuple[bytes, ...]:
    """The four zone fields' JSON for zone ``name`` at ``now``."""
    zone = zone_details(name, source, now)
    if zone is None:
        return _NULL_ZONE
    return tuple(
        _json(value) for value in (zone.name, zone.source, zone.utc_offset, zone.local_time)
    )
