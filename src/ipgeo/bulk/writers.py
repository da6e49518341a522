"""Writing rows as CSV, NDJSON or a JSON array, in batches, with per-IP rendering cached.

Row schema (the same names as the API's lookup answer, plus a few bulk columns):

* ``source``: the input file (``-`` for stdin), per-line mode only;
* ``line``: the 1-based line number in that file, per-line mode only;
* ``input``: the item as written in the input (IP, CIDR or range), per-line mode only;
* every field of ``ipgeo.geo.FIELDS`` (``ip``, ``query``, ``version``, ``network``, …);
* ``hits``: how many lines had this IP, unique mode only;
* ``error``: ``null`` for a located address, else ``reserved_address`` or ``not_found``
  (then only ``ip``, ``query`` and ``version`` are filled).

The bulk columns ``source``, ``line`` and ``input`` always come first.

``utc_offset`` and ``local_time`` are those of the moment the run started in per-line CSV rows
with the default columns (built from per-record fragments, one clock for the whole file), and
those of the moment an address was first looked up otherwise.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.lookup import Entry
from ipgeo.formats import cell
from ipgeo.geo import FIELDS

OUTPUT_FORMATS = ("csv", "ndjson", "json")
LINE_COLUMNS = ("source", "line", "input")
ENTRY_COLUMNS = (*FIELDS, "error")
PER_LINE_DEFAULT = (*LINE_COLUMNS, *ENTRY_COLUMNS)
UNIQUE_DEFAULT = (*FIELDS, "hits", "error")
_INDEX = {name: position for position, name in enumerate(FIELDS)}


def columns_for(fields: Sequence[str] | None, unique: bool) -> tuple[str, ...]:
    """Validate a ``--fields`` selection for the mode; ``None`` means the default columns."""
    if not fields:
        return UNIQUE_DEFAULT if unique else PER_LINE_DEFAULT
    known = UNIQUE_DEFAULT if unique else PER_LINE_DEFAULT
    names = tuple(dict.fromkeys(fields))
    unknown = [name for name in names if name not in known]
    if unknown:
        mode = "--unique" if unique else "--per-line"
        raise BulkError(
            f"unknown field(s) for {mode}: {', '.join(unknown)}; known: {', '.join(known)}"
        )
    leading = tuple(name for name in LINE_COLUMNS if name in names)
    return leading + tuple(name for name in names if name not in LINE_COLUMNS)


_QUOTE_RE = re.compile(r'[,"\r\n]')
# characters after which a row is left to csv.writer (quoting, and NUL, which it may refuse)
_NEEDS_CSV = re.compile(r'["\r\n\0]')
# The columns of one database record (``continent`` … ``time_zone_source``), see Entry.place_key.
_PLACE_START = FIELDS.index("continent")
_PLACE_END = FIELDS.index("utc_offset")
_EU_OFFSET = FIELDS.index("country_eu") - _PLACE_START
PLACE_CACHE_SIZE = 65_536
# the empty cells between ``version`` and ``error`` of a row without a location
_ERROR_GAP = "," * (len(FIELDS) - 3) + ","


def _csv_text(value: Any) -> str:
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


def _csv_cells(values: Sequence[Any]) -> bytes:
    return ",".join([_csv_text(value) for value in values]).encode()


def _entry_value(entry: Entry, name: str) -> Any:
    return entry.error if name == "error" else entry.row[_INDEX[name]]


class RowWriter:
    """Renders rows in one format and writes them to a binary stream in batches."""

    def __init__(self, out: BinaryIO, fmt: str, columns: Sequence[str]) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise BulkError(
                f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}"
            )
        self.out = out
        self.fmt = fmt
        self.columns = tuple(columns)
        self.line_columns = tuple(name for name in self.columns if name in LINE_COLUMNS)
        self.entry_columns = tuple(name for name in self.columns if name not in LINE_COLUMNS)
        self.has_line = "line" in self.columns
        self.rows = 0
        self._pending: list[bytes] = []
        self._started = False
        self._csv = fmt == "csv"
        self._newline = b"" if fmt == "json" else b"\n"
        if self._csv:
            self._pending.append(_csv_cells(self.columns) + b"\n")
        self.line_format = b"%d" if self._csv else b'"line":%d'
        # csv.writer renders None as empty and quotes minimally, like ``formats.to_csv``;
        # only booleans need ``cell``'s lower-case spelling.
        self._buffer = io.StringIO()
        self._csv_writer = csv.writer(self._buffer, lineterminator="\n")
        self._positions = tuple(_INDEX.get(name, -1) for name in self.entry_columns)
        self._all_fields = self.entry_columns == ENTRY_COLUMNS
        self._places: dict[int | None, str] = {}
        self._has_input = "input" in self.columns
        self._lead = b"," if ("source" in self.columns or self.has_line) else b""
        self._end = (b"" if self._csv else b"}") + self._newline
        leading = 1 if self._has_input else 0
        self._eu_position = (
            self.entry_columns.index("country_eu") + leading
            if "country_eu" in self.entry_columns
            else None
        )
        self._json_names = (("input",) if self._has_input else ()) + self.entry_columns

    # -- per-line rows: head(source) + line number + tail(input, entry) -------------------
    def head(self, source: str) -> bytes:
        """The constant start of every row of one input file."""
        opening = b"" if self._csv else b"{"
        if "source" not in self.columns:
            return opening
        text = _csv_cells([source]) if self._csv else b'"source":' + orjson.dumps(source)
        return opening + text + (b"," if self.has_line else b"")

    def tail(self, text: str, entry: Entry) -> bytes:
        """The end of a row after the line number: ``input`` and the IP columns."""
        row = entry.row
        if self._csv and self._all_fields and entry.error is not None:
            fast = self._error_csv_tail(text, entry)
            if fast is not None:
                return fast
        if self._all_fields:
            values = [text, *row, entry.error] if self._has_input else [*row, entry.error]
        else:
            values = [
                row[position] if position >= 0 else entry.error for position in self._positions
            ]
            if self._has_input:
                values.insert(0, text)
        if self._csv and self._all_fields and entry.place_key is not None:
            return self._fast_csv_tail(text, entry)
        if self._csv:
            eu = self._eu_position
            if eu is not None and type(values[eu]) is bool:
                values[eu] = "true" if values[eu] else "false"
            body = self._csv_line(values)
        else:
            names = self._json_names
            body = orjson.dumps(dict(zip(names, values, strict=True)))[1:-1]
        return (self._lead + body if body else body) + self._end

    def _error_csv_tail(self, text: str, entry: Entry) -> bytes | None:
        """The default CSV row of an address without a location (only ``ip``, ``query``,
        ``version`` and ``error`` filled), or ``None`` when a cell may need quoting."""
        row = entry.row
        ip, query, version = row[:3]
        if row.count(None) != len(row) - 3 or type(version) is not int:
            return None
        if _QUOTE_RE.search(f"{text}\t{ip}\t{query}\t{entry.error}"):
            return None
        cells = f"{text},{ip},{query}" if self._has_input else f"{ip},{query}"
        line = f"{cells},{version}{_ERROR_GAP}{entry.error}"
        return self._lead + line.encode() + self._end

    def _fast_csv_tail(self, text: str, entry: Entry) -> bytes:
        """The default CSV row of a located entry, its place columns rendered once per record."""
        row = entry.row
        place = self._places.get(entry.place_key)
        if place is None:
            if len(self._places) >= PLACE_CACHE_SIZE:
                self._places.clear()
            values = list(row[_PLACE_START:_PLACE_END])
            if type(values[_EU_OFFSET]) is bool:
                values[_EU_OFFSET] = "true" if values[_EU_OFFSET] else "false"
            place = self._places[entry.place_key] = self._csv_line(values).decode()
        # ip, query, network, offsets and local times never need quoting
        utc_offset, local_time, asn, asn_org = row[_PLACE_END:]
        line = (
            f"{_csv_text(text) + ',' if self._has_input else ''}{row[0]},{row[1]},{row[2]},"
            f"{row[3] or ''},{_csv_text(row[4])},{place},{utc_offset or ''},{local_time or ''},"
            f"{'' if asn is None else asn},{_csv_text(asn_org)},{_csv_text(entry.error)}"
        )
        return self._lead + line.encode() + self._end

    @property
    def renders_records(self) -> bool:
        """True when ``record_tail`` may be used (default CSV columns, per-line mode)."""
        return self._csv and self._all_fields

    def place_fragment(self, place: tuple[Any, ...]) -> bytes:
        """The CSV cells from ``hostname`` through ``error`` of a located row without ASN data,
        given the columns ``continent`` … ``local_time`` of its record."""
        values = list(place)
        if type(values[_EU_OFFSET]) is bool:
            values[_EU_OFFSET] = "true" if values[_EU_OFFSET] else "false"
        # what csv.writer writes when no cell needs quoting (str of a float is its repr)
        text = ",".join(
            [
                "" if value is None else value if type(value) is str else str(value)
                for value in values
            ]
        )
        if text.count(",") == len(values) - 1 and not _NEEDS_CSV.search(text):
            return b",," + text.encode() + b",,,"
        return b",," + self._csv_line(values) + b",,,"

    def place_fragments(self, places: list[tuple[Any, ...]]) -> list[bytes]:
        """``place_fragment`` of many records."""
        return list(map(self.place_fragment, places))

    def record_tail(self, text: str, ip: str, version: int, network: str, fragment: bytes) -> bytes:
        """``tail`` of a row made of its per-address columns and its record's fragment."""
        lead = self._lead + (_csv_text(text) + ",").encode() if self._has_input else self._lead
        return b"%s%s,%s,%d,%s%s%s" % (
            lead,
            ip.encode(),
            ip.encode(),
            version,
            network.encode(),
            fragment,
            self._end,
        )

    def ipv4_tails(
        self,
        texts: list[bytes],
        numbers: npt.NDArray[np.int64],
        prefixes: list[int],
        fragments: list[bytes],
    ) -> list[bytes]:
        """``record_tail`` of many canonical IPv4 addresses at once (C-level loops): their
        texts, integers, network prefix lengths and their records' fragments."""
        prefix = np.array(prefixes, dtype=np.int64)
        network = numbers & ~((np.int64(1) << (32 - prefix)) - 1)
        lead, end = self._lead.replace(b"%", b"%%"), self._end.replace(b"%", b"%%")
        render = (lead + b"%s,%s,%s,4,%d.%d.%d.%d/%d%s" + end).__mod__
        octets = [(network >> shift & 255).tolist() for shift in (24, 16, 8, 0)]
        columns = zip(texts, texts, texts, *octets, prefixes, fragments, strict=True)
        return list(map(render, columns))

    def _csv_line(self, values: list[Any]) -> bytes:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._csv_writer.writerow(values)
        return buffer.getvalue()[:-1].encode()

    # -- whole rows --------------------------------------------------------------------------
    def row_bytes(self, row: dict[str, Any]) -> bytes:
        """Render a full row mapping (unique mode, or any other one-off row)."""
        values = [row.get(name) for name in self.columns]
        if self._csv:
            return _csv_cells(values) + b"\n"
        return orjson.dumps(dict(zip(self.columns, values, strict=True))) + self._newline

    def unique_row(self, entry: Entry, hits: int) -> bytes:
        """A unique-mode row: the IP columns plus ``hits``."""
        row = {name: hits if name == "hits" else _entry_value(entry, name) for name in self.columns}
        return self.row_bytes(row)

    def extend(self, rows: list[bytes]) -> None:
        """Queue rendered rows; they are written in large blocks."""
        self.rows += len(rows)
        self._pending.extend(rows)
        if len(self._pending) >= 8192:
            self.flush()

    @property
    def streams_rows(self) -> bool:
        """True when rows may be handed over as one block (``extend_block``): CSV and NDJSON."""
        return self.fmt != "json"

    def extend_block(self, block: bytes, count: int) -> None:
        """Queue ``count`` rendered rows given as one block of bytes (CSV and NDJSON only)."""
        self.rows += count
        self._pending.append(block)
        self.flush()

    def flush(self) -> None:
        """Write queued rows."""
        if not self._pending:
            return
        if self.fmt == "json":
            block = b",\n".join(self._pending)
            prefix = b",\n" if self._started else b"[\n"
            self.out.write(prefix + block)
        else:
            self.out.write(b"".join(self._pending))
        self._started = True
        self._pending = []

    def close(self) -> None:
        """Write what is left and finish the document (the stream stays open)."""
        self.flush()
        if self.fmt == "json":
            self.out.write(b"\n]\n" if self._started else b"[]\n")
        self.out.flush()
