"""Cutting bulk inputs at line boundaries into chunks that separate processes or workers run.

A chunk never spans two inputs. The bytes of a plain file are not copied: its chunks are byte
ranges of the file. A gzip file, stdin or an opened stream is read once, decompressed while it
is read, into chunk files (``chunk-000007.in``) in the work directory. Newlines are counted
while cutting, so each chunk knows the number of its first line; each input is settled
(``settle``) on its first batch of lines exactly as a single run settles it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO, cast

import numpy as np
import numpy.typing as npt
import orjson

from ipgeo.bulk.errors import BulkError, Cancelled, TooLarge
from ipgeo.bulk.options import Options
from ipgeo.bulk.parsing import csv_extractor, csv_header
from ipgeo.bulk.settle import SourceFormat, header_at, settle_format, settle_json_field
from ipgeo.bulk.sources import (
    CHUNK_SIZE,
    Input,
    LineBatch,
    Source,
    open_source,
    read_batches,
    read_block,
)

DEFAULT_CHUNK_SIZE = 64 << 20
PLAN_FILE = "plan.json"
_NEWLINE = 10


def chunk_file(work_dir: Path, index: int, kind: str) -> Path:
    """The file of chunk ``index`` of one kind: ``in`` (input), ``out`` (rows), ``state``."""
    return work_dir / f"chunk-{index:06d}.{kind}"


@dataclass(frozen=True)
class Chunk:
    """One chunk: a byte range of a file holding whole lines of one input."""

    index: int  # the position in the job, in input order
    source: int  # the index of its input in ``Plan.sources``
    form: SourceFormat  # how the input is read
    path: str  # the input itself (a plain file) or a chunk file
    offset: int
    length: int
    first_line: int  # the lines of the input before this chunk

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        """The inverse of ``to_dict``."""
        return cls(**{**data, "form": SourceFormat.from_dict(data["form"])})


@dataclass(frozen=True)
class SourceReport:
    """What the summary says of one input as a whole."""

    name: str
    input_format: str  # as settled, or ``empty``
    bytes_read: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Plan:
    """The chunks of a job, its inputs, and the clock every row of the job is rendered at."""

    sources: list[SourceReport]
    chunks: list[Chunk]
    clock: str  # ISO 8601, UTC
    started: float  # ``time.time()`` when cutting began

    def now(self) -> datetime:
        """The job's clock as a datetime."""
        return datetime.fromisoformat(self.clock)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        """The inverse of ``to_dict``."""
        return cls(
            sources=[SourceReport(**item) for item in data["sources"]],
            chunks=[Chunk.from_dict(item) for item in data["chunks"]],
            clock=data["clock"],
            started=data["started"],
        )

    def save(self, work_dir: Path) -> Path:
        """Write the plan to ``work_dir/plan.json`` (atomically)."""
        target = work_dir / PLAN_FILE
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        partial.write_bytes(orjson.dumps(self.to_dict()))
        partial.replace(target)
        return target

    @classmethod
    def load(cls, work_dir: Path) -> Plan:
        """The plan written by ``save``."""
        return cls.from_dict(orjson.loads((work_dir / PLAN_FILE).read_bytes()))


def split(
    inputs: Sequence[Input],
    options: Options,
    chunk_size: int,
    work_dir: Path,
    should_cancel: Callable[[], bool] | None = None,
) -> Plan:
    """Cut ``inputs`` into chunks of about ``chunk_size`` bytes; return the plan."""
    splitter = Splitter(options, chunk_size, work_dir, should_cancel)
    for _ in splitter.cut(inputs):
        pass
    return splitter.plan()


class Splitter:
    """Cuts inputs one after the other, handing out each chunk as soon as it is complete."""

    def __init__(
        self,
        options: Options,
        chunk_size: int,
        work_dir: Path,
        should_cancel: Callable[[], bool] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.options = options
        self.chunk_size = chunk_size
        self.work_dir = work_dir
        self.should_cancel = should_cancel
        self.clock = datetime.now(UTC)
        self.started = time.time()
        self.sources: list[SourceReport] = []
        self.chunks: list[Chunk] = []
        self.name = ""  # the input being cut

    def plan(self) -> Plan:
        """The plan of everything cut so far."""
        return Plan(list(self.sources), list(self.chunks), self.clock.isoformat(), self.started)

    def cut(self, inputs: Sequence[Input]) -> Iterator[Chunk]:
        """Cut every input in order, yielding chunks as they are complete."""
        for item in inputs:
            yield from self._cut_source(item)

    def _cut_source(self, item: Input) -> Iterator[Chunk]:
        source = open_source(item)
        name = self.name = source.name
        options = self.options
        path = _file_path(item)
        keep_in_place = path is not None and not source.compressed and source.size is not None
        cutter = _Cutter(self, path if keep_in_place else None)
        tee = cast(BinaryIO, _Tee(source.stream, cutter.feed))
        reader = Source(name, tee, source.raw, None, source.compressed, False)
        try:
            batches = read_batches(reader, options.max_line, options.max_input)
            first = next(batches, None)
            if first is None:
                empty = [f"{name}: empty input"]
                self.sources.append(SourceReport(name, "empty", source.consumed(), empty))
                return
            fmt, warning = settle_format(name, first.lines, options)
            field_path = settle_json_field(name, first.lines, options) if fmt == "jsonl" else None
            header, header_line = None, 0
            if fmt == "csv":
                header, header_line = self._find_header(name, chain([first], batches))
            form = SourceFormat(name, fmt, field_path, header, header_line)
            yield from cutter.take(len(self.sources), form)
            # the lines of a file's last chunk need no counting: nothing comes after them
            while not cutter.last and read_block(reader):
                if options.max_input is not None and cutter.position > options.max_input:
                    raise TooLarge("input", options.max_input)
                if self.should_cancel is not None and self.should_cancel():
                    raise Cancelled("cancelled")
                yield from cutter.take(len(self.sources), form)
            if (
                cutter.last
                and options.max_input is not None
                and cutter.announced > options.max_input
            ):
                raise TooLarge("input", options.max_input)  # the unread rest of a plain file
            cutter.finish()
            yield from cutter.take(len(self.sources), form)
            warnings = [warning] if warning else []
            self.sources.append(SourceReport(name, fmt, source.consumed(), warnings))
        finally:
            cutter.close()
            source.close()

    def _find_header(self, name: str, batches: Iterator[LineBatch]) -> tuple[str | None, int]:
        """The CSV header line (as latin-1 text) and its number; checks its IP column."""
        lineno = 0
        for batch in batches:
            lines = batch.lines
            index = header_at(name, lines)
            if index is not None:
                line = lines[index]
                assert line is not None
                csv_extractor(csv_header(line), self.options.ip_column, name)
                return line.decode("latin-1"), lineno + index + 1
            lineno += len(lines)
        return None, 0


class _Tee:
    """A stream that hands every block read to ``sink`` too."""

    def __init__(self, stream: BinaryIO, sink: Callable[[bytes], None]) -> None:
        self.stream = stream
        self.sink = sink

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        self.sink(data)
        return data


class _Cutter:
    """Cuts the bytes of one input at the first newline past every ``chunk_size`` bytes."""

    def __init__(self, splitter: Splitter, in_place: str | None) -> None:
        self.splitter = splitter
        self.size = splitter.chunk_size
        self.in_place = in_place  # the input's path when its chunks are ranges of it
        self.position = 0  # bytes fed
        self.start = 0  # where the current chunk starts
        self.lines = 0  # newlines fed
        self.start_line = 0
        self.index: int | None = None  # the current chunk's index, once it has bytes
        self.out: BinaryIO | None = None
        self.announced = 0  # the end of the current chunk of a file read in place
        self.last = False  # ... which is its last chunk
        self.ready: list[tuple[int, str, int, int, int]] = []  # index, path, offset, length, line
        self.count_newlines = NewlineCounter()

    def feed(self, data: bytes) -> None:
        """Take the next bytes of the input."""
        at, size = 0, len(data)
        while at < size:
            wanted = self.start + self.size - self.position  # bytes to the chunk's size
            cut = data.find(b"\n", at + max(wanted, 1) - 1) if wanted <= size - at else -1
            end = size if cut < 0 else cut + 1
            self._append(data, at, end)
            at = end
            if cut >= 0:
                self._complete()

    def _append(self, data: bytes, at: int, end: int) -> None:
        if self.index is None:
            self.index = len(self.splitter.chunks) + len(self.ready)
            if self.in_place is None:
                path = chunk_file(self.splitter.work_dir, self.index, "in")
                self.out = path.open("wb")
            else:
                self._announce()
        self.lines += self.count_newlines(data, at, end)
        if self.out is not None:
            self.out.write(memoryview(data)[at:end])
        self.position += end - at

    def _announce(self) -> None:
        """Make the chunk starting here ready at once (its first line is known): its end is
        found by reading ahead in the file, by the rule ``feed`` cuts at."""
        assert self.in_place is not None and self.index is not None
        with open(self.in_place, "rb") as ahead:
            size = os.fstat(ahead.fileno()).st_size
            end = self.start + self.size - 1
            ahead.seek(end)
            while end < size:
                block = ahead.read(CHUNK_SIZE)
                found = block.find(b"\n")
                if found >= 0 or not block:
                    end += found + 1 if found >= 0 else 0
                    break
                end += len(block)
        self.announced = min(end, size)
        self.last = self.announced == size
        length = self.announced - self.start
        self.ready.append((self.index, self.in_place, self.start, length, self.start_line))

    def _complete(self) -> None:
        if self.index is None:
            return
        if self.out is not None:
            self.out.close()
            self.out = None
            path = str(chunk_file(self.splitter.work_dir, self.index, "in"))
            self.ready.append((self.index, path, 0, self.position - self.start, self.start_line))
        elif self.position != self.announced:
            raise BulkError(f"{self.splitter.name}: the file changed while it was read")
        self.index = None
        self.start = self.position
        self.start_line = self.lines

    def finish(self) -> None:
        """The input ended (or its last chunk is known): complete its last chunk."""
        if self.last:
            self.index = None
        self._complete()

    def take(self, source: int, form: SourceFormat) -> Iterator[Chunk]:
        """The chunks completed since the last call."""
        ready, self.ready = self.ready, []
        for index, path, offset, length, first_line in ready:
            chunk = Chunk(index, source, form, path, offset, length, first_line)
            self.splitter.chunks.append(chunk)
            yield chunk

    def close(self) -> None:
        """Close a chunk file left open by an error."""
        if self.out is not None:
            self.out.close()
            self.out = None


class NewlineCounter:
    """Counts newlines with numpy (twice as fast as ``bytes.count`` on blocks of a log: the
    lines before a file's last chunk are counted before it can start)."""

    def __init__(self) -> None:
        # one buffer for every block: a fresh array per block costs its page faults
        self._equal: npt.NDArray[np.bool_] = np.empty(0, dtype=bool)

    def __call__(self, data: bytes, start: int, end: int) -> int:
        """The newlines in ``data[start:end]``."""
        size = end - start
        if len(self._equal) < size:
            self._equal = np.empty(size, dtype=bool)
        equal = self._equal[:size]
        np.equal(np.frombuffer(data, dtype=np.uint8, count=size, offset=start), _NEWLINE, out=equal)
        return int(np.count_nonzero(equal))


def _file_path(item: Input) -> str | None:
    """The absolute path of the file an input reads, if it reads one (a ``(name, stream)``
    pair whose stream was opened from a path counts: an upload is cut in place, not copied)."""
    if isinstance(item, tuple):
        opened = getattr(item[1], "name", None)
        return (
            os.path.abspath(opened) if isinstance(opened, str) and os.path.isfile(opened) else None
        )
    return None if str(item) == "-" else os.path.abspath(item)
