"""Opening inputs (files, ``-`` for stdin, gzip by magic bytes) and reading them as line batches.

Reading is chunked and every line is capped, so memory stays bounded whatever the input: a
line longer than ``max_line`` bytes (a newline-less 2 GB file, say) is skipped up to its next
newline and handed on as ``None`` so that it can be counted and reported as unparseable.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import sys
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from ipgeo.bulk.errors import BulkError

CHUNK_SIZE = 1 << 20
MAX_LINE = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"

Input = str | Path | tuple[str, BinaryIO]


@dataclass
class Source:
    """One opened input: its display name, line stream and (when known) size in bytes."""

    name: str
    stream: BinaryIO
    raw: BinaryIO
    size: int | None
    compressed: bool
    owned: bool

    def position(self) -> int | None:
        """Bytes consumed from the underlying file (compressed bytes for gzip)."""
        try:
            return self.raw.tell()
        except (OSError, ValueError):
            return None

    def close(self) -> None:
        """Close what was opened here (never the caller's stdin)."""
        if self.stream is not self.raw:
            self.stream.close()
        if self.owned:
            self.raw.close()


def open_source(item: Input) -> Source:
    """Open a path, ``-`` (stdin) or a ``(name, binary stream)`` pair; detect gzip."""
    owned = False
    if isinstance(item, tuple):
        name, raw = item
    elif str(item) == "-":
        name, raw = "-", sys.stdin.buffer
    else:
        name = str(item)
        path = Path(item)
        if path.is_dir():
            raise BulkError(f"{name}: is a directory")
        try:
            raw = path.open("rb")
        except OSError as exc:
            raise BulkError(f"{name}: cannot open ({exc.strerror or exc})") from None
        owned = True
    size: int | None = None
    try:
        info = os.fstat(raw.fileno())
        size = info.st_size if stat.S_ISREG(info.st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        size = None
    buffered = raw if hasattr(raw, "peek") else cast(BinaryIO, io.BufferedReader(cast(Any, raw)))
    try:
        magic = buffered.peek(2)[:2]  # type: ignore[attr-defined]
    except OSError as exc:
        raise BulkError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if magic == _GZIP_MAGIC:
        stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        return Source(name, stream, buffered, size, True, owned)
    return Source(name, buffered, buffered, size, False, owned)


def read_batches(source: Source, max_line: int = MAX_LINE) -> Iterator[list[bytes | None]]:
    """Yield the lines of ``source`` (without newlines) in batches; overlong lines are ``None``."""
    carry = b""
    skipping = False
    while True:
        try:
            chunk = source.stream.read(CHUNK_SIZE)
        except (OSError, EOFError, zlib.error) as exc:
            kind = "gzip data" if source.compressed else "data"
            raise BulkError(f"{source.name}: unreadable {kind} ({exc})") from None
        if not chunk:
            break
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            chunk = chunk[newline + 1 :]
            skipping = False
        data = carry + chunk if carry else chunk
        lines: list[bytes | None] = data.split(b"\n")  # type: ignore[assignment]
        carry = lines.pop() or b""
        if len(data) > max_line and lines and max(map(len, lines)) > max_line:  # type: ignore[arg-type]
            lines = [None if line is not None and len(line) > max_line else line for line in lines]
        if len(carry) > max_line:
            lines.append(None)
            carry = b""
            skipping = True
        if lines:
            yield lines
    if carry:
        yield [carry if len(carry) <= max_line else None]


def total_size(inputs: Sequence[Input]) -> int | None:
    """The bytes of all inputs together, or ``None`` when one has no known size."""
    total = 0
    for item in inputs:
        if isinstance(item, tuple):
            size = _stream_size(item[1])
            if size is None:
                return None
            total += size
            continue
        if str(item) == "-":
            return None
        try:
            total += Path(item).stat().st_size
        except OSError:
            return None
    return total


def _stream_size(stream: BinaryIO) -> int | None:
    """The size of a stream that is a regular file (an opened upload), else ``None``."""
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None
