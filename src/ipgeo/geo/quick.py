"""Single IPv4 lookups from their text, with the answer's JSON kept per database record.

A City record costs ~10 µs to decode and as much again to map to the answer's fields, while
many addresses share one record (most random public addresses land on a record seen before).
So the search tree is walked here, in Python over the file's bytes (the layout is fixed by
the MaxMind DB spec), to find the record's *pointer*; each pointer's fields and their JSON
are made once per database generation. Only the per-address parts (address, network, ASN)
and the clock (offset, local time) are filled in per request.
"""

from __future__ import annotations

import mmap
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ipgeo.geo.database import place_from_record
from ipgeo.geo.models import FIELDS
from ipgeo.geo.timezones import zone_details

if TYPE_CHECKING:
    from ipgeo.geo.service import GeoService, OpenDatabases

# The fields a City record decides, between the per-address ones and the clock.
RECORD_FIELDS = FIELDS[FIELDS.index("continent") : FIELDS.index("time_zone")]
RECORDS_LIMIT = 65_536  # per process (~0.5 kB each); cleared when full, refills from use
_TOP_BITS = 16  # the first levels of the tree are walked once per 16-bit prefix


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


class _Tree:
    """The search tree of one opened file: IPv4 text -> (record pointer, prefix length)."""

    def __init__(self, path: str, node_count: int, record_size: int, ip_version: int) -> None:
        if record_size not in (24, 28, 32):
            raise ValueError(f"unsupported record size {record_size}")
        with open(path, "rb") as handle:
            self.stat = os.fstat(handle.fileno())
            self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        self.node_count = node_count
        self._node_bytes = record_size // 4
        self._record_size = record_size
        if len(self._map) < self._node_bytes * node_count:
            raise ValueError("the file is shorter than its search tree")
        self._start, _ = self._descend(0, 0, 0, 96 if ip_version == 6 else 0)
        self._top = self._top_levels()

    def _child(self, node: int, bit: int) -> int:
        base = node * self._node_bytes
        tree = self._map
        if self._record_size == 24:
            base += bit * 3
            return int.from_bytes(tree[base : base + 3], "big")
        if self._record_size == 28:
            middle = tree[base + 3]
            if bit:
                return (middle & 0x0F) << 24 | int.from_bytes(tree[base + 4 : base + 7], "big")
            return (middle & 0xF0) << 20 | int.from_bytes(tree[base : base + 3], "big")
        base += bit * 4
        return int.from_bytes(tree[base : base + 4], "big")

    def _top_levels(self) -> list[tuple[int, int]]:
        """(node or record, depth) after the first 16 bits of each 16-bit prefix (numpy)."""
        tree = np.frombuffer(self._map, dtype=np.uint8)
        prefixes = np.arange(1 << _TOP_BITS, dtype=np.int64)
        nodes = np.full(prefixes.size, self._start, dtype=np.int64)
        depths = np.zeros(prefixes.size, dtype=np.int64)
        for depth in range(_TOP_BITS):
            walking = nodes < self.node_count
            if not walking.any():
                break
            bits = (prefixes[walking] >> (_TOP_BITS - 1 - depth)) & 1
            nodes[walking] = self._children(tree, nodes[walking], bits)
            depths[walking] = depth + 1
        del tree  # no export of the map may outlive this call (close() needs none)
        return list(zip(nodes.tolist(), depths.tolist(), strict=True))

    def _children(self, tree: Any, nodes: Any, bits: Any) -> Any:
        """``_child`` for arrays of nodes and bits."""
        base = nodes * self._node_bytes
        if self._record_size == 28:
            middle = tree[base + 3].astype(np.int64)
            high = np.where(bits == 1, (middle & 0x0F) << 24, (middle & 0xF0) << 20)
            start = base + bits * 4
        else:
            width = self._record_size // 8
            high = np.zeros(nodes.size, dtype=np.int64)
            start = base + bits * width
            if width == 4:
                high = tree[start].astype(np.int64) << 24
                start = start + 1
        return (
            high
            | tree[start].astype(np.int64) << 16
            | tree[start + 1].astype(np.int64) << 8
            | tree[start + 2].astype(np.int64)
        )

    def _descend(self, node: int, number: int, depth: int, bits: int) -> tuple[int, int]:
        """Follow the top ``bits`` bits of the 32-bit (or zero) ``number`` from ``node``."""
        node_count = self.node_count
        while depth < bits and node < node_count:
            node = self._child(node, number >> (31 - depth) & 1 if bits <= 32 else 0)
            depth += 1
        return node, depth

    def find(self, number: int) -> tuple[int, int]:
        """The record pointer (``node_count``: none) and prefix length of an IPv4 number."""
        node, depth = self._top[number >> (32 - _TOP_BITS)]
        if node >= self.node_count:
            return node, depth
        return self._descend(node, number, depth, 32)

    def close(self) -> None:
        self._map.close()


class QuickLookups:
    """``GeoService.quick_ipv4``'s engine: per-generation tree and per-record answers."""

    def __init__(self, service: GeoService) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._generation = -1
        self._tree: _Tree | None = None
        self._records: dict[int, RecordAnswer | None] = {}  # None: the regular path answers

    def _sync(self, current: OpenDatabases) -> _Tree | None:
        with self._lock:
            if self._generation == current.generation:
                return self._tree
            info = current.city.info
            try:
                tree: _Tree | None = _Tree(
                    info.path, info.node_count, info.record_size, info.ip_version
                )
            except (OSError, ValueError):
                tree = None
            if tree is not None and _signature(tree.stat) != current.signatures[0]:
                tree.close()  # replaced since the reader opened it: not the same tree
                tree = None
            self._tree, self._records = tree, {}
            self._generation = current.generation
            return tree

    def answer(self, text: str, number: int, current: OpenDatabases) -> QuickAnswer | None:
        """The answer for a public IPv4 address, or ``None`` to leave it to the regular path."""
        tree = self._tree if self._generation == current.generation else self._sync(current)
        if tree is None:
            return None
        pointer, prefix = tree.find(number)
        if pointer <= tree.node_count:
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
