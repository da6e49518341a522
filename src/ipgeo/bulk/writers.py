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
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, BinaryIO

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
_LOCAL_TIME = _INDEX["local_time"]


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
# Columns that depend only on the database record (see ``Entry.place_key``), and columns that
# depend only on ``local_time`` (which includes the offset): their rendering is cached.
PLACE, CLOCK, OWN = "place", "clock", "own"
_KIND = dict.fromkeys(
    FIELDS[FIELDS.index("continent") : FIELDS.index("time_zone_source") + 1], PLACE
)
_KIND |= {"utc_offset": CLOCK, "local_time": CLOCK}
STATIC_CACHE_SIZE = 65_536


def _csv_text(value: Any) -> str:
    """One CSV cell the way ``csv.writer`` quotes ``formats.cell(value)`` (minimal quoting)."""
    text = value if type(value) is str else cell(value)
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
        self._runs: list[tuple[str, tuple[str, ...]]] = []
        for name in self.entry_columns:
            kind = _KIND.get(name, OWN)
            if self._runs and self._runs[-1][0] == kind:
                self._runs[-1] = (kind, (*self._runs[-1][1], name))
            else:
                self._runs.append((kind, (name,)))
        self._static: dict[tuple[Any, int], bytes] = {}

    # -- per-line rows: head(source) + line number + tail(input, entry) -------------------
    def head(self, source: str) -> bytes:
        """The constant start of every row of one input file."""
        opening = b"" if self._csv else b"{"
        if "source" not in self.columns:
            return opening
        text = _csv_cells([source]) if self._csv else b'"source":' + orjson.dumps(source)
        return opening + text + (b"," if self.has_line else b"")

    def tail(self, text: str, entry: Entry) -> bytes:
        """The end of a row after the line number: ``input`` and the cached IP columns."""
        parts: list[bytes] = []
        if "input" in self.columns:
            parts.append(_csv_cells([text]) if self._csv else b'"input":' + orjson.dumps(text))
        if self.entry_columns:
            encoded = entry.encoded
            if encoded is None:
                encoded = entry.encoded = self._encode_entry(entry)
            parts.append(encoded)
        lead = b"," if parts and ("source" in self.columns or self.has_line) else b""
        closing = b"" if self._csv else b"}"
        return lead + b",".join(parts) + closing + self._newline

    def _encode_entry(self, entry: Entry) -> bytes:
        parts: list[bytes] = []
        for index, (kind, names) in enumerate(self._runs):
            if kind == OWN or entry.place_key is None:
                parts.append(self._encode_columns(entry, names))
            else:
                key = (entry.place_key if kind == PLACE else entry.row[_LOCAL_TIME], index)
                part = self._static.get(key)
                if part is None:
                    if len(self._static) >= STATIC_CACHE_SIZE:
                        self._static.clear()
                    part = self._static[key] = self._encode_columns(entry, names)
                parts.append(part)
        return b",".join(parts)

    def _encode_columns(self, entry: Entry, names: tuple[str, ...]) -> bytes:
        values = [_entry_value(entry, name) for name in names]
        if self._csv:
            return _csv_cells(values)
        return orjson.dumps(dict(zip(names, values, strict=True)))[1:-1]

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
