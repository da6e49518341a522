"""The batch answer as JSON: many queries through the kernel at once, in a few C-level passes.

Canonical dotted quads are parsed with ``inet_pton`` in one ``map``, checked against the
reserved ranges with one ``searchsorted`` and walked through the City (and ASN) trees as
arrays (``TreeWalker.walk_v4``). Each City record renders its part of the answer once, as a
JSON template kept with the record (``PlaceRecord.rendering``); per batch the zone and ASN
values go into the templates of its distinct records (the clock read once per batch), then
per address its IP text and network. Every other query (IPv6, names, reserved or unknown
addresses, other spellings) is answered by ``GeoService.lookup``. Either way an answer is
``orjson.dumps`` of ``LookupResult.as_dict(fields)``, or of the query with its error.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ipgeo.geo.addresses import parse_address
from ipgeo.geo.database import PLACE_VALUES
from ipgeo.geo.errors import GeoError
from ipgeo.geo.generation import Generation
from ipgeo.geo.models import FIELDS
from ipgeo.geo.records import PlaceRecord
from ipgeo.geo.service import GeoService
from ipgeo.geo.timezones import zone_details
from ipgeo.geo.tree import IntArray
from ipgeo.metrics import labelled

# A record's template is formatted twice: once per batch with the values of the fields in
# ``_MARKED`` (``%s``), then per address with its IP text and network (``%%s``, ``%%d``).
_MARKED = ("time_zone", "time_zone_source", "utc_offset", "local_time", "asn", "asn_org")
_SLOTTED = ("ip", "query", "network")
_CONSTANTS: dict[str, Any] = {"version": 4, "hostname": None, "addresses": None}
# Stand-ins while the template is serialized (orjson escapes a NUL as ``\u0000``), and what
# each becomes in the template.
_STAND_INS = {"ip": "\0ip", "query": "\0ip", "network": "\0network", "mark": "\0mark"}
_REPLACEMENTS = (
    (b'"\\u0000mark"', b"%s"),
    (b'"\\u0000ip"', b'"%%s"'),
    (b'"\\u0000network"', b'"%%d.%%d.%%d.%%d/%%d"'),
)
_NULL_ZONE = (b"null",) * 4
_NULL_ASN = (b"null",) * 2
# (zone, source) -> (Unix second, its four JSON values then): zones of the same second
_ZONE_JSON: dict[tuple[str, str], tuple[int, tuple[bytes, ...]]] = {}
_pton4 = partial(socket.inet_pton, socket.AF_INET)
# Names resolved at once per batch: each waits on the network, not on the CPU.
_RESOLVERS = 32


def _json(value: Any) -> bytes:
    """A value as JSON, safe inside a %-template."""
    return orjson.dumps(value).replace(b"%", b"%%")


def batch_json(
    service: GeoService,
    queries: list[str],
    fields: tuple[str, ...] | None,
    lang: str | None,
    names_deadline: float = 5.0,
) -> bytes:
    """The JSON array of the answers to ``queries``, in order; errors are per item.

    Queries that need DNS (names; every address with reverse DNS on) are resolved
    concurrently, all within ``names_deadline`` seconds: those still unresolved then get
    an ``unresolvable`` error, so a batch of slow names never holds a worker for long.
    """
    out: list[bytes | None] = [None] * len(queries)
    if queries and not service.reverse_dns:  # with hostnames every answer is looked up
        _answer_ipv4(service, queries, fields, lang, out)
    remote: list[int] = []
    for position, answer in enumerate(out):
        if answer is not None:
            continue
        if service.reverse_dns or parse_address(queries[position]) is None:
            remote.append(position)
        else:
            out[position] = _answer_one(service, queries[position], fields, lang)
    if remote:
        _answer_remote(service, queries, remote, fields, lang, names_deadline, out)
    return b"[" + b",".join(out) + b"]"  # type: ignore[arg-type]


def _answer_remote(
    service: GeoService,
    queries: list[str],
    positions: list[int],
    fields: tuple[str, ...] | None,
    lang: str | None,
    deadline: float,
    out: list[bytes | None],
) -> None:
    """Answer the queries that need DNS, concurrently, until ``deadline`` seconds pass."""
    executor = ThreadPoolExecutor(min(_RESOLVERS, len(positions)), "ipgeo-batch-dns")
    try:
        futures = {
            executor.submit(_answer_one, service, queries[position], fields, lang): position
            for position in positions
        }
        done, late = wait(futures, timeout=deadline)
        for future in done:
            out[futures[future]] = future.result()
        for future in late:
            future.cancel()
            query = queries[futures[future]]
            message = f"{query[:80]!r} was not resolved within the batch's {deadline:g} s"
            error = {"query": query, "error": {"code": "unresolvable", "message": message}}
            out[futures[future]] = orjson.dumps(error)
    finally:  # running resolutions end by themselves (each within the DNS timeout)
        executor.shutdown(wait=False, cancel_futures=True)


def _answer_one(
    service: GeoService, query: str, fields: tuple[str, ...] | None, lang: str | None
) -> bytes:
    try:
        return orjson.dumps(service.lookup(query, lang=lang).as_dict(fields))
    except GeoError as exc:
        return orjson.dumps({"query": query, "error": {"code": exc.code, "message": exc.message}})


def _answer_ipv4(
    service: GeoService,
    queries: list[str],
    fields: tuple[str, ...] | None,
    lang: str | None,
    out: list[bytes | None],
) -> None:
    """Fill in the answers of the located public IPv4 addresses written canonically."""
    positions, numbers = _parse_ipv4(queries)
    if not positions:
        return
    current = service.current()
    keep = ~service.reserved.reserved_v4(numbers)
    pointers, prefixes, asn_pointers = current.locate_v4(numbers)
    keep &= pointers > current.city_walker.node_count  # the rest: looked up one by one
    if not keep.all():
        positions = [positions[i] for i in np.flatnonzero(keep).tolist()]
        numbers, pointers, prefixes = numbers[keep], pointers[keep], prefixes[keep]
        asn_pointers = asn_pointers[keep]
    if not positions:
        return
    keys = pointers << 32 | asn_pointers  # both pointers in one key (each below 2**32)
    distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    texts = _templates(
        service, current, distinct, numbers[first], fields or FIELDS, service.languages_for(lang)
    )
    chosen = np.array(texts, dtype=object)[inverse.reshape(-1)].tolist()
    _fill(out, queries, positions, chosen, numbers, prefixes, fields or FIELDS)
    labelled("lookups", "found").inc(len(positions))


def _templates(
    service: GeoService,
    current: Generation,
    keys: npt.NDArray[np.integer[Any]],
    samples: IntArray,
    fields: tuple[str, ...],
    languages: tuple[str, ...],
) -> list[bytes]:
    """The template of each distinct key with this batch's zone and ASN values put in."""
    zones: dict[tuple[str, str] | None, tuple[bytes, ...]] = {}
    marks = [_MARKED.index(name) for name in fields if name in _MARKED]
    pick = itemgetter(*marks) if marks else None
    key_list: list[int] = keys.tolist()
    sample_list: list[int] = samples.tolist()
    pointers = [key >> 32 for key in key_list]
    places = current.records.places(pointers, sample_list, 4, languages)
    plan = _plan(fields)
    render = partial(_template, plan=plan)
    rendering_key = plan.key
    result: list[bytes] = []
    append = result.append
    for key, sample, place in zip(key_list, sample_list, places, strict=True):
        assert place is not None  # every key's pointer is above node_count: a record
        text = place.renderings.get(rendering_key) or place.rendering(rendering_key, render)
        if pick is None:
            append(text % ())
            continue
        named = service.zone_of(place)
        values = zones.get(named)
        if values is None:
            values = zones[named] = _zone_json(named)
        asn, asn_org = current.asn_at(key & 0xFFFFFFFF, 4, sample)
        values += _NULL_ASN if asn is None and asn_org is None else (_json(asn), _json(asn_org))
        append(text % pick(values))
    return result


@dataclass(frozen=True, slots=True)
class _TemplatePlan:
    """How records' templates are made for one choice of fields."""

    fields: tuple[str, ...]
    key: str  # of the template among a record's renderings (a string keeps its hash)
    # picks the template's values, in ``fields`` order, from a record's values + ``extra``
    pick: Callable[[tuple[Any, ...]], tuple[Any, ...]]
    extra: tuple[Any, ...]  # the stand-ins and constants of the fields records do not hold


def _template(place: PlaceRecord, plan: _TemplatePlan) -> bytes:
    """A record's answer with ``%`` slots for the per-batch and per-address values."""
    values = plan.pick(place.values + plan.extra)
    text = orjson.dumps(dict(zip(plan.fields, values, strict=True))).replace(b"%", b"%%%%")
    for stand_in, slot in _REPLACEMENTS:
        text = text.replace(stand_in, slot)
    return text


@lru_cache(maxsize=256)
def _plan(fields: tuple[str, ...]) -> _TemplatePlan:
    """The ``_TemplatePlan`` of ``fields``."""
    positions: list[int] = []
    extra: list[Any] = []
    for name in fields:
        if name in _SLOTTED:
            extra.append(_STAND_INS[name])
        elif name in _MARKED:  # ``time_zone`` too: the zone may come from polygons
            extra.append(_STAND_INS["mark"])
        elif name in _CONSTANTS:
            extra.append(_CONSTANTS[name])
        else:
            positions.append(PLACE_VALUES.index(name))
            continue
        positions.append(len(PLACE_VALUES) + len(extra) - 1)
    getter = itemgetter(*positions)
    pick = getter if len(positions) > 1 else lambda values: (getter(values),)
    return _TemplatePlan(fields, "batch:" + ",".join(fields), pick, tuple(extra))


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


def _zone_json(named: tuple[str, str] | None) -> tuple[bytes, ...]:
    """The four zone fields' JSON for ``(zone, source)`` now, as ``lookup_ip`` has them."""
    if named is None:
        return _NULL_ZONE
    second = int(time.time())
    kept = _ZONE_JSON.get(named)
    if kept is not None and kept[0] == second:
        return kept[1]
    zone = zone_details(*named)
    values: tuple[bytes, ...] = _NULL_ZONE
    if zone is not None:
        values = tuple(
            _json(value) for value in (zone.name, zone.source, zone.utc_offset, zone.local_time)
        )
    if len(_ZONE_JSON) >= 4096:
        _ZONE_JSON.clear()
    _ZONE_JSON[named] = (second, values)
    return values
