"""Normalising the clock fields, storing answers as gzip files, and describing differences."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path
from types import TracebackType

# Only values of exactly these shapes are replaced: a changed format still shows up.
OFFSET = rb"[+-]\d\d:\d\d"
STAMP = rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d" + OFFSET
PLACEHOLDER = {b"utc_offset": b"+hh:mm", b"local_time": b"yyyy-mm-ddThh:mm:ss+hh:mm"}
SHAPE = {b"utc_offset": re.compile(OFFSET), b"local_time": re.compile(STAMP)}


def _subs(template: bytes, replacement: bytes) -> list[tuple[re.Pattern[bytes], bytes]]:
    """One substitution per clock field; ``%(n)s`` is its name, ``%(v)s`` its value."""
    return [
        (re.compile(template % {b"n": name, b"v": SHAPE[name].pattern}),
         replacement % {b"n": name, b"v": value})
        for name, value in PLACEHOLDER.items()
    ]  # fmt: skip


SUBS = {  # per normaliser: (pattern, replacement) pairs
    "json": _subs(rb'"%(n)s":"%(v)s"', rb'"%(n)s":"%(v)s"'),
    "xml": _subs(rb"<%(n)s>%(v)s</%(n)s>", rb"<%(n)s>%(v)s</%(n)s>"),
    "text": _subs(rb"(?m)^(%(n)s +)%(v)s$", rb"\g<1>%(v)s"),
}
_SECONDS = re.compile(rb'(?m)^(  "seconds": )[0-9.e+-]+(,)$')  # the bulk summary's run time
_CELL = re.compile(rb'"(?:[^"]|"")*"|[^,]*')


def _cells(line: bytes) -> list[bytes] | None:
    """The raw cells of one CSV line (``None`` unless they join back to exactly the line)."""
    if b'"' not in line:
        return line.split(b",")
    cells, position = [], 0
    while True:
        match = _CELL.match(line, position)
        assert match is not None  # the pattern matches the empty string
        cells.append(match.group())
        position = match.end() + 1
        if position > len(line):
            break
    return cells if b",".join(cells) == line else None


def _csv(body: bytes) -> bytes:
    lines = body.split(b"\n")
    header = _cells(lines[0]) or []
    clock = [(index, name) for index, name in enumerate(header) if name in PLACEHOLDER]
    for number in range(1, len(lines) if clock else 0):
        cells = _cells(lines[number])
        if cells is None or len(cells) != len(header):
            continue
        for index, name in clock:
            if SHAPE[name].fullmatch(cells[index]):
                cells[index] = PLACEHOLDER[name]
        lines[number] = b",".join(cells)
    return b"\n".join(lines)


def normalise(kind: str, data: bytes) -> bytes:
    """``data`` with ``utc_offset`` and ``local_time`` values replaced by placeholders."""
    for pattern, replacement in SUBS.get(kind, ()):
        data = pattern.sub(replacement, data)
    if kind == "csv":
        return _csv(data)
    if kind == "summary":
        return _SECONDS.sub(rb"\g<1>0\g<2>", data)
    return data


def kind_of(content_type: str) -> str:
    """The normaliser for an HTTP body of ``content_type``."""
    media = content_type.split(";", maxsplit=1)[0].strip()
    kinds = {"application/json": "json", "application/xml": "xml", "text/csv": "csv"}
    return kinds.get(media, "text" if media == "text/plain" else "raw")


class CaseWriter:
    """Writes one case's items (``key``, normalised payload) to a gzip file."""

    def __init__(self, path: Path) -> None:
        self.file = gzip.open(path, "wb", compresslevel=1)  # noqa: SIM115 (closed in __exit__)

    def write(self, key: str, payload: bytes) -> None:
        """Append one item."""
        self.file.write(f"{key}\t{len(payload)}\n".encode("utf-8", "backslashreplace"))
        self.file.write(payload + b"\n")

    def __enter__(self) -> CaseWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.file.close()


def read_case(path: Path) -> Iterator[tuple[str, bytes]]:
    """The items of a case file, in order."""
    with gzip.open(path, "rb") as file:
        while header := file.readline():
            key, _, size = header.rstrip(b"\n").rpartition(b"\t")
            yield key.decode(), file.read(int(size))
            file.read(1)


def _window(line: bytes | None, column: int) -> str:
    if line is None:
        return "(no such line)"
    start = max(0, column - 80)
    text = line[start : column + 120].decode("utf-8", "backslashreplace")
    return ("…" if start else "") + text + ("…" if column + 120 < len(line) else "")


def differing_lines(old: bytes, new: bytes) -> int:
    """How many lines differ, position by position."""
    return sum(a != b for a, b in zip_longest(old.split(b"\n"), new.split(b"\n")))


def describe(key: str, old: bytes, new: bytes) -> str:
    """The first differing line of two payloads, around the first differing byte."""
    pairs = zip_longest(old.split(b"\n"), new.split(b"\n"))
    number, (a, b) = next((n, pair) for n, pair in enumerate(pairs, 1) if pair[0] != pair[1])
    column = next(
        (i for i, (x, y) in enumerate(zip(a or b"", b or b"", strict=False)) if x != y),
        min(len(a or b""), len(b or b"")),
    )
    lines = old.count(b"\n") + 1, new.count(b"\n") + 1
    return (
        f"  {key}\n    line {number}, byte {column + 1} ({lines[0]} lines stored, {lines[1]} now)\n"
        f"    stored: {_window(a, column)}\n    now:    {_window(b, column)}"
    )
