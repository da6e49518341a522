"""Writing rows as CSV, NDJSON or a JSON array, in blocks.

Row schema (the same names as the API's lookup answer, plus a few bulk columns):

* ``source``: the input file (``-`` for stdin), per-line mode only;
* ``line``: the 1-based line number in that file, per-line mode only;
* ``input``: the item as written in the input (IP, CIDR or range), per-line mode only;
* every field of ``ipgeo.geo.FIELDS`` (``ip``, ``query``, ``version``, ``network``, …);
* ``hits``: how many lines had this IP, unique mode only;
* ``error``: ``null`` for a located address, else ``reserved_address`` or ``not_found``
  (then only ``ip``, ``query`` and ``version`` are filled).

The bulk columns ``source``, ``line`` and ``input`` always come first.

``utc_offset`` and ``local_time`` are those of the moment the run started (one clock for the
whole run). Rows are rendered by ``rendering.Renderer``, the one renderer of each format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson

from ipgeo.bulk.errors import BulkError, TooLarge
from ipgeo.bulk.rendering import Renderer, csv_cells
from ipgeo.geo import FIELDS

OUTPUT_FORMATS = ("csv", "ndjson", "json")
LINE_COLUMNS = ("source", "line", "input")
ENTRY_COLUMNS = (*FIELDS, "error")
PER_LINE_DEFAULT = (*LINE_COLUMNS, *ENTRY_COLUMNS)
UNIQUE_DEFAULT = (*FIELDS, "hits", "error")


@dataclass(frozen=True)
class Framing:
    """Which ends of the document a writer writes: a whole run writes both; the chunks of a
    chunked run write fragments (rows with their separators) that ``merge`` joins."""

    opens: bool  # the CSV header line, JSON's ``[``
    closes: bool  # JSON's ``]``, and no separator after the last row


WHOLE = Framing(opens=True, closes=True)
FIRST_FRAGMENT = Framing(opens=True, closes=False)
FRAGMENT = Framing(opens=False, closes=False)


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


class RowWriter:
    """Renders rows in one format and writes them to a binary stream in blocks.

    Every row ends with its separator (a newline; ``,\\n`` in a JSON array, whose last one is
    left out), so that rows of many lines can be joined into one block.
    """

    def __init__(
        self,
        out: BinaryIO,
        fmt: str,
        columns: Sequence[str],
        now: datetime | None = None,
        per_line: bool = True,
        max_rows: int | None = None,
        framing: Framing = WHOLE,
    ) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise BulkError(
                f"unknown output format {fmt!r}; use one of {', '.join(OUTPUT_FORMATS)}"
            )
        self.out = out
        self.fmt = fmt
        self.columns = tuple(columns)
        self.has_line = "line" in self.columns
        self.rows = 0
        self.max_rows = max_rows
        self.framing = framing
        self._pending: list[bytes] = []
        self._started = False
        self._csv = fmt == "csv"
        self._newline = b"" if fmt == "json" else b"\n"
        if self._csv and framing.opens:
            self._pending.append(csv_cells(self.columns) + b"\n")
        self.line_format = b"%d" if self._csv else b'"line":%d'
        leading = "source" in self.columns or self.has_line
        self._open = b"" if self._csv else b"{"
        separator = b",\n" if fmt == "json" else b"\n"
        row_columns = tuple(name for name in self.columns if name not in ("source", "line"))
        self.renderer = Renderer(
            fmt,
            row_columns,
            b"," if leading else b"",
            (b"" if self._csv else b"}") + separator,
            now or datetime.now(UTC),
            per_line=per_line,
        )

    def head(self, source: str) -> bytes:
        """The constant start of every row of one input file (before the line number)."""
        if "source" not in self.columns:
            return self._open
        text = csv_cells([source]) if self._csv else b'"source":' + orjson.dumps(source)
        return self._open + text + (b"," if self.has_line else b"")

    def row_bytes(self, row: dict[str, Any]) -> bytes:
        """Render a full row mapping (a job's stored row, say) as one line."""
        values = [row.get(name) for name in self.columns]
        if self._csv:
            return csv_cells(values) + b"\n"
        return orjson.dumps(dict(zip(self.columns, values, strict=True))) + self._newline

    def extend(self, rows: list[bytes]) -> None:
        """Queue rendered rows; they are written in large blocks (``TooLarge`` past the bound)."""
        self.rows += len(rows)
        self._bound()
        self._pending.extend(rows)
        if len(self._pending) >= 8192:
            self.flush()

    def extend_block(self, block: bytes, count: int) -> None:
        """Queue ``count`` rendered rows given as one block of bytes."""
        self.rows += count
        self._bound()
        self._pending.append(block)
        self.flush()

    def _bound(self) -> None:
        if self.max_rows is not None and self.rows > self.max_rows:
            raise TooLarge("rows", self.max_rows)

    def flush(self) -> None:
        """Write queued rows."""
        if not self._pending:
            return
        block = b"".join(self._pending)
        self._pending = []
        if self.fmt == "json":
            if not block:
                return
            if self.framing.closes:
                block = (b",\n" if self._started else b"[\n") + block[:-2]
            elif self.framing.opens and not self._started:
                block = b"[\n" + block
        self.out.write(block)
        self._started = True

    def close(self) -> None:
        """Write what is left and finish the document (the stream stays open)."""
        self.flush()
        if self.fmt == "json":
            if self.framing.closes:
                self.out.write(b"\n]\n" if self._started else b"[]\n")
            elif self.framing.opens and not self._started:
                self.out.write(b"[\n")
        self.out.flush()
