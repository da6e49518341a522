"""The one renderer of each output format: a row's end (its columns after the line number).

A row is rendered from a ``%`` template of its answer: the constant cells (CSV) or fields
(JSON) with ``%s`` slots for the per-address values (``SLOTS``: input, ip, query, version,
network, hits), filled for many addresses at once. A City record renders its part once and
keeps it (``PlaceRecord.rendering``), with slots for the values of this run (``MARKED``: the
zone at the run's clock, the ASN values); an answer without a record is rendered directly.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any

import orjson

from ipgeo.bulk.resolver import Answer, Rows
from ipgeo.formats import cell
from ipgeo.geo.database import PLACE_VALUES
from ipgeo.geo.records import ZONE_AT, PlaceRecord
from ipgeo.geo.timezones import zone_details

SLOTS = ("input", "ip", "query", "version", "network", "hits")
MARKED = ("time_zone", "time_zone_source", "utc_offset", "local_time", "asn", "asn_org")
_PLACE_NAMES = PLACE_VALUES[:ZONE_AT]
_QUOTE_RE = re.compile(r'[,"\r\n]')
# cells left to ``csv.writer`` in per-line rows (its quoting of CR and NUL differs)
_NEEDS_WRITER = re.compile(r'[,"\r\n\0]')
# stand-ins while a template is rendered (no CSV quoting, no JSON escaping)
_SLOT, _MARK = "\x01slot\x01", "\x01mark\x01"
_SLOT_CSV, _MARK_CSV = _SLOT.encode(), _MARK.encode()
_SLOT_JSON, _MARK_JSON = orjson.dumps(_SLOT), orjson.dumps(_MARK)
_VERSIONS = {4: b"4", 6: b"6"}
# after a record's values when its template's parts are picked
_STAND_INS = (_SLOT, _MARK, None)
_SLOT_AT, _MARK_AT, _NONE_AT = range(len(PLACE_VALUES), len(PLACE_VALUES) + 3)
_QUOTED = re.compile(r'["\r\n\0]')  # with a comma in a value: a cell ``csv.writer`` quotes
# the CSV text of values other than strings, by type (``formats.cell`` for the rest)
_CELL_TEXT: dict[type, Callable[[Any], str]] = {
    bool: lambda value: "true" if value else "false",
    int: str,
    float: str,
}
_NO_ZONE = (None, None, None, None)
_MARKS_KEPT = 65_536


def _picker(positions: list[int]) -> Callable[[tuple[Any, ...]], Sequence[Any]]:
    """The values at ``positions`` of a tuple, in one call."""
    if len(positions) > 1:
        return itemgetter(*positions)
    return lambda values: [values[position] for position in positions]


def _cell_texts(values: Sequence[Any]) -> list[str]:
    """``formats.cell`` of each value (unquoted), with the common types made inline."""
    return [
        value
        if type(value) is str
        else ""
        if value is None
        else _CELL_TEXT.get(type(value), cell)(value)
        for value in values
    ]


def csv_text(value: Any) -> str:
    """One CSV cell the way ``csv.writer`` quotes ``formats.cell(value)`` (minimal quoting)."""
    if value is None:
        return ""
    kind = type(value)
    if kind is int or kind is float:
        return str(value)
    text = value if kind is str else cell(value)
    if _QUOTE_RE.search(text):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_cells(values: Sequence[Any]) -> bytes:
    """A CSV line (without its newline) of ``values``."""
    return ",".join([csv_text(value) for value in values]).encode()


class Renderer:
    """Renders the row ends of one format and column selection, for one run's clock."""

    def __init__(
        self,
        fmt: str,
        columns: Sequence[str],
        lead: bytes,
        end: bytes,
        now: datetime,
        per_line: bool = True,
    ) -> None:
        self.csv = fmt == "csv"
        self.columns = tuple(columns)  # input, the lookup fields, hits, error
        self.slots = tuple(name for name in self.columns if name in SLOTS)
        self.marked = tuple(name for name in self.columns if name in MARKED)
        self._lead = lead if self.columns else b""
        self._end = end
        # Per-line CSV cells are those of ``csv.writer`` (which quotes the empty cell of a
        # one-cell line), unique rows' those of ``csv_text``.
        self._per_line = per_line
        self._alone = per_line and len(self.columns) == 1
        self.now = now
        self.key = ("bulk", fmt, self.columns, lead, end, self._alone)
        self._templates: list[bytes | None] = []  # by answer id
        # a record's template, JSON: its parts picked from ``PlaceRecord.values + _STAND_INS``
        # (per column its value, a slot or mark stand-in, or None: left empty when located)
        plan = [
            _SLOT_AT
            if name in SLOTS
            else _MARK_AT
            if name in MARKED
            else _PLACE_NAMES.index(name)
            if name in _PLACE_NAMES
            else _NONE_AT
            for name in self.columns
        ]
        self._record_parts = _picker(plan)
        # CSV: a format of the record's cells (``{}``) between the slots, marks and empty cells
        self._record_values = _picker([at for at in plan if at < _SLOT_AT])
        cells = {_SLOT_AT: "%%s", _MARK_AT: "%s", _NONE_AT: ""}
        row = ",".join(cells.get(at, "{}") for at in plan)
        self._record_format = (self._lead.decode() + row if row else "") + self._end.decode()
        self._zones: dict[tuple[str, str] | None, tuple[Any, ...]] = {}
        # rendered marked cells by (zone, asn, asn_org): zones repeat, ASNs mostly too
        self._marks: dict[tuple[Any, ...], tuple[bytes, ...]] = {}

    def clear(self) -> None:
        """Forget the answers' templates (their ids are given again after a reload)."""
        self._templates = []

    # -- cells -----------------------------------------------------------------------------------
    def _cell(self, value: Any) -> bytes:
        if not self.csv:
            return orjson.dumps(value)
        if value is None or value == "":
            return b'""' if self._alone else b""
        if not self._per_line or _NEEDS_WRITER.search(text := cell(value)) is None:
            return csv_text(value).encode()
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([text])
        return buffer.getvalue()[:-1].encode()

    def _texts(self, texts: list[str]) -> list[bytes]:
        """Text cells (IP texts, inputs), escaped for the format."""
        if not self.csv:
            return list(map(orjson.dumps, texts))
        if _QUOTE_RE.search("\t".join(texts)) is None:  # no cell to quote
            return list(map(str.encode, texts))
        return [self._cell(text) for text in texts]

    def _networks(self, networks: list[str | None]) -> list[bytes]:
        if not self.csv:
            return list(map(orjson.dumps, networks))
        return [b"" if network is None else network.encode() for network in networks]

    # -- templates -------------------------------------------------------------------------------
    def _template(self, parts: Sequence[Any], levels: int) -> bytes:
        """The row end of the column values ``parts`` (with the slot and mark stand-ins) as a
        ``%`` template, formatted ``levels`` times (the marked columns first when two)."""
        marked = levels == 2
        if self.csv:
            texts = _cell_texts(parts)
            line = ",".join(texts)
            if self._alone or line.count(",") >= len(texts) or _QUOTED.search(line):  # to quote
                line = ",".join(
                    part if part in (_SLOT, _MARK) else self._cell(part).decode() for part in parts
                )
            body = line.encode()
            slot, mark = _SLOT_CSV, _MARK_CSV
        else:
            fields = dict(zip(self.columns, parts, strict=True))
            body = orjson.dumps(fields)[1:-1]
            slot, mark = _SLOT_JSON, _MARK_JSON
        text = self._lead + body + self._end if body else self._end
        text = text.replace(b"%", b"%" * 2**levels)
        text = text.replace(slot, b"%%s" if marked else b"%s")
        return text.replace(mark, b"%s")

    def _record_template(self, place: PlaceRecord) -> bytes:
        if not self.csv or self._alone:
            return self._template(self._record_parts(place.values + _STAND_INS), 2)
        values = self._record_values(place.values)
        texts = _cell_texts(values)
        joined = "\t".join(texts)
        if _NEEDS_WRITER.search(joined):
            texts = [self._cell(value).decode() for value in values]
        if "%" in joined:  # the template is formatted twice
            texts = [text.replace("%", "%%%%") for text in texts]
        return self._record_format.format(*texts).encode()

    def template(self, answer_id: int, answer: Answer) -> bytes:
        """The template of one answer of this run (slots: ``self.slots``)."""
        templates = self._templates
        if answer_id < len(templates):
            found = templates[answer_id]
            if found is not None:
                return found
        else:
            templates.extend([None] * (answer_id + 1 - len(templates)))
        place = answer.place
        if place is None:
            values = {"asn": answer.asn, "asn_org": answer.asn_org, "error": answer.error}
            parts = [_SLOT if name in SLOTS else values.get(name) for name in self.columns]
            found = self._template(parts, 1)
        else:
            record: bytes = place.rendering(self.key, self._record_template)
            found = record % self._marked_cells(answer) if self.marked else record % ()
        templates[answer_id] = found
        return found

    def _marked_cells(self, answer: Answer) -> tuple[bytes, ...]:
        """The cells of the marked columns of an answer (zone at the run's clock, ASN)."""
        key = (answer.zone, answer.asn, answer.asn_org)
        found = self._marks.get(key)
        if found is None:
            values = (*self._zone(answer.zone), answer.asn, answer.asn_org)
            marks = dict(zip(MARKED, values, strict=True))
            found = tuple(self._cell(marks[name]) for name in self.marked)
            if len(self._marks) >= _MARKS_KEPT:
                self._marks.clear()
            self._marks[key] = found
        return found

    def _zone(self, named: tuple[str, str] | None) -> tuple[Any, ...]:
        """Name, source, offset and local time of a zone at the run's clock."""
        found = self._zones.get(named)
        if found is None:
            details = zone_details(*named, self.now) if named else None
            found = self._zones[named] = (
                _NO_ZONE
                if details is None
                else (details.name, details.source, details.utc_offset, details.local_time)
            )
        return found

    # -- rows ------------------------------------------------------------------------------------
    def tails(
        self,
        answers: Sequence[Answer],
        rows: Rows,
        inputs: list[str] | None = None,
        hits: list[int] | None = None,
    ) -> list[bytes]:
        """The row end of each row of ``rows`` (``inputs``: the items as written)."""
        ids = rows.answers
        template = self.template
        # one template per answer of the batch, then a gather (most rows share answers)
        made = {answer: template(answer, answers[answer]) for answer in set(ids)}
        templates = list(map(made.__getitem__, ids))
        columns: list[list[bytes]] = []
        ips: list[bytes] = []
        for name in self.slots:
            if name == "input":
                columns.append(self._texts(inputs if inputs is not None else rows.ips))
            elif name in ("ip", "query"):
                ips = ips or self._texts(rows.ips)
                columns.append(ips)
            elif name == "version":
                columns.append(list(map(_VERSIONS.__getitem__, rows.versions)))
            elif name == "network":
                columns.append(self._networks(rows.networks))
            else:
                columns.append([b"%d" % count for count in hits or ()])
        if not columns:
            return [text % () for text in templates]
        return list(map(bytes.__mod__, templates, zip(*columns, strict=True)))
