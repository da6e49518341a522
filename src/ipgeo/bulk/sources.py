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

from ipgeo.bulk.errors import BulkError, TooLarge

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

    def consumed(self) -> int:
        """The bytes a run reports as read of this source: its size, else its position."""
        position = self.position()
        if position is None or self.size is not None:
            return self.size or 0
        return position

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


class LineBatch:
    """Complete lines read together: the bytes they came in (``buffer[:end]``), and the lines."""

    __slots__ = ("_lines", "buffer", "end", "max_line")

    def __init__(
        self,
        buffer: bytes | None,
        end: int,
        max_line: int,
        lines: list[bytes | None] | None = None,
    ) -> None:
        self.buffer = buffer  # None when the lines are given (some line was overlong)
        self.end = end
        self.max_line = max_line
        self._lines = lines

    @property
    def lines(self) -> list[bytes | None]:
        """The lines without their newlines; overlong ones are ``None``."""
        if self._lines is None:
            assert self.buffer is not None
            lines: list[bytes | None] = self.buffer[: self.end].split(b"\n")  # type: ignore[assignment]
            limit = self.max_line
            if self.end > limit and max(map(len, lines)) > limit:  # type: ignore[arg-type]
                lines = [None if line is not None and len(line) > limit else line for line in lines]
            self._lines = lines
        return self._lines


def read_block(source: Source) -> bytes:
    """The next ``CHUNK_SIZE`` bytes of ``source`` (fewer at its end); ``BulkError`` when the
    data cannot be read."""
    try:
        return source.stream.read(CHUNK_SIZE)
    except (OSError, EOFError, zlib.error) as exc:
        kind = "gzip data" if source.compressed else "data"
        raise BulkError(f"{source.name}: unreadable {kind} ({exc})") from None


def read_batches(
    source: Source, max_line: int = MAX_LINE, max_bytes: int | None = None
) -> Iterator[LineBatch]:
    """Yield the lines of ``source`` in batches of about ``CHUNK_SIZE`` bytes.

    Past ``max_bytes`` of (decompressed) data it raises ``TooLarge``: a small gzip file can
    hold a thousand times its size.
    """
    carry = b""
    skipping = False
    read = 0
    while True:
        chunk = read_block(source)
        if not chunk:
            break
        read += len(chunk)
        if max_bytes is not None and read > max_bytes:
            raise TooLarge("input", max_bytes)
        if skipping:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            chunk = chunk[newline + 1 :]
            skipping = False
        data = carry + chunk if carry else chunk
        end = data.rfind(b"\n")
        if end < 0:
            carry = data
            if len(carry) > max_line:
                yield LineBatch(None, 0, max_line, [None])
                carry = b""
                skipping = True
            continue
        batch = LineBatch(data, end, max_line)
        carry = data[end + 1 :]
        if len(carry) > max_line:
            batch = LineBatch(None, 0, max_line, [*batch.lines, None])
            carry = b""
            skipping = True
        yield batch
    if carry:
        yield LineBatch(None, 0, max_line, [carry if len(carry) <= max_line else None])


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
