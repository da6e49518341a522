"""Streaming a job's NDJSON result as CSV, NDJSON or a JSON array (never all in memory)."""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from ipgeo.bulk.writers import RowWriter

RESULT_FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "ndjson": "application/x-ndjson",
    "json": "application/json",
}
_BLOCK = 1024 * 1024
_ROWS_PER_BLOCK = 4096


def _lines(path: Path) -> Iterator[list[bytes]]:
    with path.open("rb") as handle:
        while True:
            lines = handle.readlines(_BLOCK)
            if not lines:
                return
            yield lines


def stream_result(path: Path, fmt: str, columns: Sequence[str]) -> Iterator[bytes]:
    """Yield the result file in ``fmt``; CSV and JSON are rendered exactly as the CLI's."""
    if fmt == "ndjson":
        with path.open("rb") as handle:
            while block := handle.read(_BLOCK):
                yield block
        return
    if fmt == "json":
        started = False
        for lines in _lines(path):
            body = b",\n".join(line.rstrip(b"\n") for line in lines)
            yield (b",\n" if started else b"[\n") + body
            started = True
        yield b"\n]\n" if started else b"[]\n"
        return
    buffer = io.BytesIO()
    writer = RowWriter(buffer, "csv", columns)
    writer.flush()  # the header row
    for lines in _lines(path):
        for line in lines:
            buffer.write(writer.row_bytes(orjson.loads(line)))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    if buffer.tell():
        yield buffer.getvalue()
