"""An LRU of rendered lookup answers, safe across database reloads and the clock (no Flask).

Keys are ``(query or IP, fields, format, language)`` within one database generation: the
whole cache is dropped the moment the service swaps its databases. Answers whose body holds
``utc_offset`` or ``local_time`` keep their fields instead of a body, and those two are
recomputed on every hit, so a cached answer never shows a stale clock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ipgeo.formats import render, to_json
from ipgeo.geo.models import LookupResult
from ipgeo.geo.quick import QuickAnswer
from ipgeo.geo.service import GeoService
from ipgeo.geo.timezones import zone_details
from ipgeo.metrics import labelled

CLOCK_FIELDS = ("utc_offset", "local_time")


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One answer: its rendered body, or its fields plus the zone to refresh the clock from."""

    fmt: str
    body: bytes | None
    content_type: str
    row: Mapping[str, Any] | None = None
    zone: tuple[str, str] | None = None  # (time zone, source) for the clock fields
    # JSON around the values of utc_offset and local_time, when the row has both in that order
    json_parts: tuple[bytes, bytes, bytes] | None = None

    def rendered(self) -> tuple[bytes, str]:
        """The body and content type as of now."""
        if self.body is not None:
            return self.body, self.content_type
        if self.json_parts is not None and self.zone is not None:
            details = zone_details(*self.zone)
            head, middle, tail = self.json_parts
            if details is None:
                return head + b"null" + middle + b"null" + tail, self.content_type
            return (
                head + to_json(details.utc_offset) + middle + to_json(details.local_time) + tail,
                self.content_type,
            )
        return render(self.fresh_row(), self.fmt)

    def fresh_row(self) -> dict[str, Any]:
        """The answer's fields with ``utc_offset`` / ``local_time`` as of now."""
        if self.row is None and self.json_parts is not None:
            fresh: dict[str, Any] = orjson.loads(self.rendered()[0])  # clock already fresh
            return fresh
        row = dict(self.row or {})
        if self.zone is not None:
            details = zone_details(*self.zone)
            if "utc_offset" in row:
                row["utc_offset"] = details.utc_offset if details else None
            if "local_time" in row:
                row["local_time"] = details.local_time if details else None
        return row


def cached_answer(
    row: Mapping[str, Any],
    fmt: str,
    zone: tuple[str, str] | None,
    keep_row: bool = False,
) -> tuple[CachedAnswer, bytes, str]:
    """Wrap a fresh answer; also return its body and content type as rendered now.

    ``zone`` is the answer's (time zone, source), whether or not ``row`` shows it;
    ``keep_row`` keeps the fields (for callers that add per-request fields to them).
    """
    if not any(name in row for name in CLOCK_FIELDS):
        zone = None
    body, content_type = render(row, fmt)
    if keep_row or zone is not None:
        parts = _json_parts(row) if fmt == "json" and zone is not None and not keep_row else None
        answer = CachedAnswer(fmt, None, content_type, dict(row), zone, parts)
        return answer, body, content_type
    return CachedAnswer(fmt, body, content_type), body, content_type


def _quick_json(made: QuickAnswer) -> CachedAnswer:
    """The cached form of a quick answer in JSON with every field."""
    if made.zone is None:
        head, middle, tail = made.json_parts
        return CachedAnswer("json", head + b"null" + middle + b"null" + tail, _JSON)
    return CachedAnswer("json", None, _JSON, None, made.zone, made.json_parts)


_JSON = "application/json"
# Stand-ins for the clock values while rendering the rest of an answer once; orjson writes
# NUL as \u0000, which no rendered value of the other fields can contain unescaped.
_MARKS = {"utc_offset": "\x00ipgeo:utc_offset\x00", "local_time": "\x00ipgeo:local_time\x00"}


def _json_parts(row: Mapping[str, Any]) -> tuple[bytes, bytes, bytes] | None:
    """The JSON of ``row`` split around its utc_offset and local_time values (in that order)."""
    names = list(row)
    if not all(name in row for name in CLOCK_FIELDS):
        return None
    if names.index("utc_offset") > names.index("local_time"):
        return None
    marked = to_json({**row, **_MARKS})
    offset_mark, local_mark = to_json(_MARKS["utc_offset"]), to_json(_MARKS["local_time"])
    if marked.count(offset_mark) != 1 or marked.count(local_mark) != 1:
        return None
    head, rest = marked.split(offset_mark)
    middle, tail = rest.split(local_mark)
    return head, middle, tail


class AnswerCache:
    """A bounded, thread-safe LRU of answers for the database generation in service."""

    def __init__(self, service: GeoService, size: int) -> None:
        self.service = service
        self.size = size
        self._entries: OrderedDict[Hashable, CachedAnswer] = OrderedDict()
        self._generation = service.generation
        self._lock = threading.Lock()

    def generation(self) -> int:
        """The generation in service now (after noticing replaced database files)."""
        self.service.refresh()
        generation = self.service.generation
        if generation != self._generation:
            with self._lock:
                self._entries.clear()
                self._generation = generation
        return generation

    def get(self, key: Hashable, generation: int) -> CachedAnswer | None:
        """The answer cached for ``key`` in ``generation``, if any."""
        with self._lock:
            answer = self._entries.get((generation, key))
            if answer is not None:
                self._entries.move_to_end((generation, key))
            return answer

    def put(self, key: Hashable, generation: int, answer: CachedAnswer) -> None:
        """Remember ``answer`` (computed on ``generation``); old generations are not kept."""
        with self._lock:
            if generation != self._generation:
                return
            self._entries[(generation, key)] = answer
            if len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def cached_lookup(
    cache: AnswerCache | None,
    key: Hashable,
    fields: tuple[str, ...] | None,
    fmt: str,
    lookup: Callable[[], LookupResult],
    keep_row: bool = False,
    quick: Callable[[], QuickAnswer | None] | None = None,
) -> tuple[CachedAnswer, bytes | None, str]:
    """The answer for ``key``: cached, or made by ``lookup`` (which may raise ``GeoError``).

    Returns the answer and, when just computed, its rendered body and content type (a
    cached answer renders itself with a fresh clock). Only IP lookups whose time zone
    comes from the database (or that have none) are kept. ``quick``, when given, is tried
    before ``lookup``: the same answer made faster, or ``None`` to leave it to ``lookup``
    (``GeoService.quick_ipv4``).
    """
    generation = 0
    if cache is not None:
        generation = cache.generation()
        answer = cache.get(key, generation)
        if answer is not None:
            labelled("lookup_cache", "hit").inc()
            labelled("lookups", "found").inc()
            return answer, None, answer.content_type
        labelled("lookup_cache", "miss").inc()
    made = quick() if quick is not None else None
    if made is not None:
        if fields is None and fmt == "json" and not keep_row:
            answer = _quick_json(made)
            body, content_type = answer.rendered()
        else:
            row = made.row if fields is None else {name: made.row[name] for name in fields}
            answer, body, content_type = cached_answer(row, fmt, made.zone, keep_row)
        if cache is not None:
            cache.put(key, generation, answer)
        return answer, body, content_type
    result = lookup()
    zone = (result.time_zone, result.time_zone_source or "database") if result.time_zone else None
    answer, body, content_type = cached_answer(result.as_dict(fields), fmt, zone, keep_row)
    # Names resolve differently over time, and a polygon time zone depends on the locator's
    # state (PostGIS, or the embedded finder while PostGIS is down): neither is kept.
    if cache is not None and result.addresses is None and result.time_zone_source != "polygon":
        cache.put(key, generation, answer)
    return answer, body, content_type
