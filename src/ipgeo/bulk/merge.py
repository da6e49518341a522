"""Merging the chunks of a chunked bulk run into the output and summary of one single run.

Per-line rows are the chunks' row files one after the other (the first one starts the
document; a JSON array loses the separator after its last row and gets its ``]``). Unique rows
are looked up and rendered here, from the hits per IP of every chunk in first-seen order. The
summary adds up the chunks' counts; top places come from hits by facet value, distinct IPs
from the union of the chunks' address sets.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

from ipgeo.bulk.bulk_run import BulkRun
from ipgeo.bulk.chunk_run import ChunkState, FacetCounts, load_state
from ipgeo.bulk.chunks import Plan, chunk_file
from ipgeo.bulk.errors import BulkError, Cancelled, TooLarge
from ipgeo.bulk.options import Options
from ipgeo.bulk.resolver import NOT_FOUND, RESERVED
from ipgeo.bulk.summary import MAX_SAMPLES, Facet, Summary
from ipgeo.bulk.tally import Tally
from ipgeo.bulk.writers import FIRST_FRAGMENT, FRAGMENT
from ipgeo.geo import GeoService

_COPY_BLOCK = 1 << 24
_STEP = 1 << 26  # bytes copied between looks at cancel (~40 ms)
_PART_MIN = 8192  # unique rows rendered in one part at least


@dataclass(frozen=True)
class UniquePart:
    """A slice of the unique rows to render: hits per IP in first-seen order."""

    index: int
    hits: dict[str, int]


# Renders every part (``write_unique_part`` for each, in any order, anywhere).
PartsRenderer = Callable[[list[UniquePart]], object]


def merge(
    service: GeoService,
    plan: Plan,
    options: Options,
    work_dir: Path,
    output: BinaryIO | str | Path,
    render_parts: PartsRenderer | None = None,
    parts: int = 1,
    should_cancel: Callable[[], bool] | None = None,
    placed: list[int] | None = None,
) -> Summary:
    """Write the output of ``plan``'s chunks (done in ``work_dir``) and return the summary.

    A path ``output`` is written to ``<path>.partial`` and renamed on success; the first
    chunk's row file is moved there, not copied. Unique rows are rendered in ``parts``
    slices by ``render_parts`` (default: here, one after the other). ``should_cancel`` is
    asked between unique rows' batches and copied blocks of rows: ``Cancelled`` leaves no
    output behind. ``placed``: the per-line rows are in ``<output>.partial`` already, these
    many bytes of each chunk (``follow.RowsFollower``); only the document's end is written.
    """
    stop = Stop(should_cancel)
    states = [load_state(work_dir, chunk.index) for chunk in plan.chunks]
    summary = _summary(plan, states)
    tally = _tally(options.unique, states)
    if options.unique or not plan.chunks:
        # unique rows, or the empty document of inputs without lines
        rows = len(tally.seen)
        if options.max_rows is not None and rows > options.max_rows:
            raise TooLarge("rows", options.max_rows)
        unique = _unique_parts(tally.seen, parts)
        stop.check()
        if render_parts is None:
            for part in unique:
                write_unique_part(service, plan.now(), options, work_dir, part, should_cancel)
        else:
            render_parts(unique)
        paths = [_part_file(work_dir, part.index) for part in unique]
        counts = [len(part.hits) for part in unique]
        facets = [_load_part_facets(work_dir, part.index) for part in unique]
    else:
        rows = sum(state.rows for state in states)
        if options.max_rows is not None and rows > options.max_rows:
            raise TooLarge("rows", options.max_rows)
        paths = [chunk_file(work_dir, chunk.index, "out") for chunk in plan.chunks]
        counts = [state.rows for state in states]
        facets = [state.facets for state in states]
    segments = _segments(paths, counts, options.output_format, placed)
    trailer = b"\n]\n" if options.output_format == "json" else b""
    if options.output_format == "json" and not rows:
        segments, trailer = [], b"[]\n"
    # The rows are written (most of them copied by the kernel) while the summary is counted
    writing = _Background(
        partial(_write_segments, segments, trailer, output, stop, placed is not None)
    )
    try:
        summary.rows = rows
        tally.finish(summary, _count_places(tally, facets), options.top)
    except BaseException:
        stop.abort()
        writing.wait(quietly=True)
        raise
    writing.wait()
    summary.seconds = round(time.time() - plan.started, 3)
    return summary


def _count_places(tally: Tally, counts: list[FacetCounts]) -> list[Facet | None]:
    """Add the hits by facet value of chunks (or unique parts) to ``tally``; return the
    facets by id."""
    facets: list[Facet | None] = [None, None]
    facet_ids: dict[tuple[Any, ...], int] = {}
    for part in counts:
        tally.facet_hits[RESERVED] += part.reserved
        tally.facet_hits[NOT_FOUND] += part.not_found
        for values, hits in part.places:
            facet_id = facet_ids.get(values)
            if facet_id is None:
                facet_id = facet_ids[values] = len(facets)
                facets.append(Facet._make(values))
            tally.facet_hits[facet_id] += hits
    tally.facet_hits = +tally.facet_hits  # no zero counts (a chunk without reserved rows)
    return facets


def write_unique_part(
    service: GeoService,
    clock: datetime,
    options: Options,
    work_dir: Path,
    part: UniquePart,
    should_cancel: Callable[[], bool] | None = None,
) -> None:
    """Render one slice of the unique rows (the first opens the document) into its file, and
    their hits by summary facet into another."""
    path = _part_file(work_dir, part.index)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    facets = path.with_suffix(".facets")
    facets_partial = facets.with_name(partial.name + ".facets")
    framing = FIRST_FRAGMENT if part.index == 0 else FRAGMENT
    try:
        with partial.open("wb") as out:
            run = BulkRun(service, options, out, None, should_cancel, clock, framing)
            run.tally.seen = part.hits
            run.write_unique()
            run.writer.close()
        with facets_partial.open("wb") as handle:
            FacetCounts.of(run).save(handle)
        facets_partial.replace(facets)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        facets_partial.unlink(missing_ok=True)
        raise


def _load_part_facets(work_dir: Path, index: int) -> FacetCounts:
    """The facet hits of unique part ``index`` (``write_unique_part``)."""
    return FacetCounts.load(
        orjson.loads(_part_file(work_dir, index).with_suffix(".facets").read_bytes())
    )


def _part_file(work_dir: Path, index: int) -> Path:
    return work_dir / f"unique-{index:06d}.out"


def _unique_parts(seen: dict[str, int], parts: int) -> list[UniquePart]:
    """``seen`` in at most ``parts`` slices of at least ``_PART_MIN`` IPs (at least one)."""
    count = max(1, min(parts, len(seen) // _PART_MIN))
    keys = list(seen)
    size = -(-len(keys) // count) if keys else 0
    slices = [keys[start : start + size] for start in range(0, len(keys), size)] if keys else []
    slices = slices or [[]]
    return [UniquePart(index, {ip: seen[ip] for ip in chunk}) for index, chunk in enumerate(slices)]


def _summary(plan: Plan, states: list[ChunkState]) -> Summary:
    summary = Summary()
    chunk_warnings: dict[int, list[str]] = {}
    for chunk, state in zip(plan.chunks, states, strict=True):
        chunk_warnings.setdefault(chunk.source, []).extend(state.warnings)
        summary.lines += state.lines
        summary.skipped += state.skipped
        summary.unparseable += state.unparseable
        room = MAX_SAMPLES - len(summary.unparseable_lines)
        summary.unparseable_lines.extend(state.unparseable_lines[: max(room, 0)])
    for index, report in enumerate(plan.sources):
        summary.sources.append(report.name)
        summary.input_formats[report.name] = report.input_format
        summary.warnings.extend(report.warnings)
        summary.warnings.extend(chunk_warnings.get(index, []))
        summary.bytes_read += report.bytes_read
    return summary


def _tally(unique: bool, states: list[ChunkState]) -> Tally:
    tally = Tally(unique)
    seen = tally.seen
    for state in states:
        if unique:
            for ip, hits in state.seen.items():
                seen[ip] = seen.get(ip, 0) + hits
        else:
            tally.distinct.add_arrays(state.distinct_v4, state.distinct_v6)
    return tally


def _segments(
    paths: list[Path], rows: list[int], fmt: str, sizes: list[int] | None
) -> list[tuple[Path, int]]:
    """The row files and how many of their bytes belong to the output (``sizes``: theirs
    when they were placed already, else read from the files)."""
    sizes = sizes if sizes is not None else [path.stat().st_size for path in paths]
    segments = list(zip(paths, sizes, strict=True))
    if fmt == "json" and any(rows):
        # the separator after the last row of the array goes
        last = max(index for index, count in enumerate(rows) if count)
        path, size = segments[last]
        segments[last] = (path, size - 2)
    return segments


class _Opened:
    """The output as a stream, and a ``finish`` to call on success (renames a path's file)."""

    def __init__(
        self, output: BinaryIO | str | Path, first: Path | None = None, placed: bool = False
    ) -> None:
        self.output = output
        self.first = first
        self.placed = placed  # the partial file exists, with the rows
        self.partial: Path | None = None
        self.handle: BinaryIO | None = None

    def __enter__(self) -> tuple[BinaryIO, Any]:
        output = self.output
        if not isinstance(output, str | Path):
            return output, output.flush
        target = Path(output)
        try:
            if target.exists() and not target.is_file():  # /dev/null, a FIFO: in place
                self.handle = target.open("wb")
            else:
                self.partial = partial_of(target)
                if self.placed:
                    self.handle = cast(BinaryIO, self.partial.open("r+b", buffering=0))
                elif self.first is not None:
                    _move(self.first, self.partial)
                    # unbuffered: rows are appended to the file by the kernel (``_copy``)
                    self.handle = cast(BinaryIO, self.partial.open("r+b", buffering=0))
                else:
                    self.handle = self.partial.open("wb")
        except OSError as exc:
            raise BulkError(f"cannot write {target}: {exc.strerror or exc}") from None
        return self.handle, self._finish

    def _finish(self) -> None:
        assert self.handle is not None
        self.handle.flush()
        if self.partial is not None:
            self.partial.replace(self.partial.with_name(self.partial.name[: -len(".partial")]))

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.close()
        if exc[0] is not None and self.partial is not None:
            self.partial.unlink(missing_ok=True)


def _write_segments(
    segments: Sequence[tuple[Path, int]],
    trailer: bytes,
    output: BinaryIO | str | Path,
    stop: Stop,
    placed: bool = False,
) -> None:
    """Write the segments and the trailer; the first segment's file is moved into a path
    (``placed``: all of them are in the path's partial file already)."""
    first = segments[0][0] if segments and isinstance(output, str | Path) else None
    if first is not None and Path(output).exists() and not Path(output).is_file():  # type: ignore[arg-type]
        first = None
    with _Opened(output, first, placed) as (out, finish):
        rest = segments
        if placed:
            out.truncate(sum(size for _, size in segments))
            out.seek(0, os.SEEK_END)
            rest = []
        elif first is not None:
            out.truncate(segments[0][1])
            out.seek(0, os.SEEK_END)
            rest = segments[1:]
        out.flush()
        for path, size in rest:
            with path.open("rb") as part:
                copy_bytes(part, out, size, stop)
            path.unlink()  # its pages are freed here, while the summary is counted
        out.write(trailer)
        finish()


def partial_of(target: Path) -> Path:
    """Where the output ``target`` is written until it is complete."""
    return target.with_name(target.name + ".partial")


def _move(source: Path, target: Path) -> None:
    try:
        source.replace(target)
    except OSError:  # another file system
        shutil.copyfile(source, target)


def copy_bytes(source: BinaryIO, target: BinaryIO, size: int, stop: Stop, start: int = 0) -> None:
    """Append bytes ``start..size`` of ``source`` to ``target``: in the kernel where both are
    files (``copy_file_range`` shares the blocks on file systems that can, and copies on the
    server over NFS), else by blocks; ``stop`` is asked between steps of at most ``_STEP``."""
    try:
        source_fd, target_fd = source.fileno(), target.fileno()
    except (AttributeError, OSError, ValueError):
        source_fd = target_fd = -1
    done = start
    if source_fd >= 0 and target_fd >= 0:
        target.flush()
        for kernel_copy in (_copy_file_range, os.sendfile):
            try:
                while done < size:
                    stop.check()
                    sent = kernel_copy(target_fd, source_fd, done, min(size - done, _STEP))
                    if not sent:
                        break
                    done += sent
                return
            except OSError:
                if done > start:
                    raise
    source.seek(done)
    while done < size:
        stop.check()
        block = source.read(min(size - done, _COPY_BLOCK))
        if not block:
            break
        target.write(block)
        done += len(block)


def _copy_file_range(target_fd: int, source_fd: int, offset: int, count: int) -> int:
    return os.copy_file_range(source_fd, target_fd, count, offset)


class Stop:
    """Raises ``Cancelled`` when the caller's ``should_cancel`` says so, or after ``abort``."""

    def __init__(self, should_cancel: Callable[[], bool] | None) -> None:
        self.should_cancel = should_cancel
        self.aborted = False

    def abort(self) -> None:
        """Make every later ``check`` raise (the merge failed elsewhere)."""
        self.aborted = True

    def check(self) -> None:
        """Raise ``Cancelled`` if asked to stop."""
        if self.aborted or (self.should_cancel is not None and self.should_cancel()):
            raise Cancelled("cancelled")


class _Background:
    """Runs ``work`` in a thread; ``wait`` joins it and raises what it raised."""

    def __init__(self, work: Callable[[], None]) -> None:
        self._work = work
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ipgeo-merge-rows")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc

    def wait(self, quietly: bool = False) -> None:
        """Wait for the work to end; raise its error unless ``quietly``."""
        self._thread.join()
        if self._error is not None and not quietly:
            raise self._error
