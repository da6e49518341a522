"""Single IPv4 lookups from their text, with the answer's JSON kept per database record.

A City record costs ~10 µs to decode and as much again to map to the answer's fields, while
many addresses share one record (most random public addresses land on a record seen before).
So the search tree is walked here (``mmdbtree.IPv4Walker.find``: a table for the first 16
levels, then plain Python over the file's bytes) to find the record's *pointer*; each
pointer's fields and their JSON are made once per database generation. Only the per-address
parts (address, network, ASN) and the clock (offset, local time) are filled in per request.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from ipgeo.geo.database import place_from_record
from ipgeo.geo.mmdbtree import IPv4Walker, SearchTree
from ipgeo.geo.models import FIELDS
from ipgeo.geo.timezones import zone_details

if TYPE_CHECKING:
    from ipgeo.geo.service import GeoService, OpenDatabases

# The fields a City record decides, between the per-address ones and the clock.
RECORD_FIELDS = FIELDS[FIELDS.index("continent") : FIELDS.index("time_zone")]
RECORDS_LIMIT = 65_536  # per process (~0.5 kB each); cleared when full, refills from use


@dataclass(frozen=True, slots=True)
class RecordAnswer:
    """What one City record contributes to an answer."""

    values: tuple[Any, ...]  # RECORD_FIELDS
    json: bytes  # '"continent":…,"accuracy_radius_km":…' (no braces)
    zone: str | None  # the time zone from the record


@dataclass(frozen=True, slots=True)
class QuickAnswer:
    """One IPv4 answer: its fields, (time zone, source), and its JSON around the clock.

    ``json_parts`` joined with the JSON of ``utc_offset`` and ``local_time`` between them
    is ``orjson.dumps(row)`` (with the clock as of the moment it is joined).
    """

    values: tuple[Any, ...]  # of every field in ``FIELDS`` order
    zone: tuple[str, str] | None
    json_parts: tuple[bytes, bytes, bytes]

    @property
    def row(self) -> dict[str, Any]:
        """The answer's fields (made on demand: the JSON is what most callers need)."""
        return dict(zip(FIELDS, self.values, strict=True))


class QuickLookups:
    """``GeoService.quick_ipv4``'s engine: per-generation tree and per-record answers."""

    def __init__(self, service: GeoService) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._generation = -1
        self._tree: IPv4Walker | None = None
        self._records: dict[int, RecordAnswer | None] = {}  # None: the regular path answers

    def _sync(self, current: OpenDatabases) -> IPv4Walker | None:
        with self._lock:
            if self._generation == current.generation:
                return self._tree
            info = current.city.info
            walker: IPv4Walker | None = None
            try:
                tree = SearchTree(
                    Path(info.path), info.node_count, info.record_size, info.ip_version
                )
            except (OSError, ValueError):
                tree = None
            if tree is not None and _signature(tree.stat) != current.signatures[0]:
                tree.close()  # replaced since the reader opened it: not the same tree
            elif tree is not None:
                walker = IPv4Walker(tree)
            self._tree, self._records = walker, {}
            self._generation = current.generation
            return walker

    def answer(self, text: str, number: int, current: OpenDatabases) -> QuickAnswer | None:
        """The answer for a public IPv4 address, or ``None`` to leave it to the regular path."""
        tree = self._tree if self._generation == current.generation else self._sync(current)
        if tree is None:
            return None
        pointer, prefix = tree.find(number)
        if pointer <= tree.tree.node_count:
            return None  # no record: the regular path raises NotFound
        records = self._records
        try:
            record = records[pointer]
        except KeyError:
            record = self._record(current, text, prefix)
            if len(records) >= RECORDS_LIMIT:
                records.clear()
            records[pointer] = record
        if record is None:
            return None
        return self._assemble(text, number, prefix, record, current)

    def _record(self, current: OpenDatabases, text: str, prefix: int) -> RecordAnswer | None:
        try:
            raw, raw_prefix = current.city.get_text(text)
        except ValueError:
            return None
        if raw is None or raw_prefix != prefix:
            return None
        return record_answer(raw, self.service.languages)

    def _assemble(
        self, text: str, number: int, prefix: int, record: RecordAnswer, current: OpenDatabases
    ) -> QuickAnswer:
        network_number = number >> (32 - prefix) << (32 - prefix) if prefix else 0
        network = f"{socket.inet_ntoa(network_number.to_bytes(4, 'big'))}/{prefix}"
        asn: int | None = None
        asn_org: str | None = None
        if current.asn is not None:
            asn_record = current.asn.record(text)
            if asn_record:
                asn = asn_record.get("autonomous_system_number")
                asn_org = asn_record.get("autonomous_system_organization")
        details = zone_details(record.zone, "database") if record.zone else None
        if details is None:
            clock: tuple[Any, ...] = (None, None, None, None)
            zone = None
            zone_json = b'"time_zone":null,"time_zone_source":null,"utc_offset":'
        else:
            clock = (details.name, "database", details.utc_offset, details.local_time)
            zone = (details.name, "database")
            zone_json = (
                b'"time_zone":' + orjson.dumps(details.name) + b',"time_zone_source":"database",'
                b'"utc_offset":'
            )
        values = (text, text, 4, network, None, *record.values, *clock, asn, asn_org)
        head = b'{"ip":"%s","query":"%s","version":4,"network":"%s","hostname":null,%s,%s' % (
            text.encode(),
            text.encode(),
            network.encode(),
            record.json,
            zone_json,
        )
        tail = b',"asn":%s,"asn_org":%s}' % (orjson.dumps(asn), orjson.dumps(asn_org))
        return QuickAnswer(values, zone, (head, b',"local_time":', tail))


def record_answer(record: Mapping[str, Any], languages: tuple[str, ...]) -> RecordAnswer | None:
    """What a City record contributes, or ``None`` when its time zone must come from polygons."""
    place = place_from_record(record, None, languages)
    if not place.time_zone and place.latitude is not None and place.longitude is not None:
        return None  # the locator's answer (and its state) is the regular path's business
    values = tuple(getattr(place, name) for name in RECORD_FIELDS)
    rendered = orjson.dumps(dict(zip(RECORD_FIELDS, values, strict=True)))
    return RecordAnswer(values, rendered[1:-1], place.time_zone)


def _signature(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
