"""Running one chunk of a chunked bulk run through the engine (``BulkRun``), into two files.

``chunk-000007.out`` holds the chunk's rows as a fragment of the output (the first chunk's
starts the document: CSV header, JSON ``[``); ``chunk-000007.state`` its counts: the summary's
counts and first bad lines, hits by facet VALUE (facet ids are per process), the distinct IPs
as packed arrays, and in unique mode the hits per IP in first-seen order. Both are written
under temporary names and renamed, the state last: a chunk is done when its state file exists,
and a retried chunk replaces both.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import numpy.typing as npt
import orjson

from ipgeo.bulk.bulk_run import BulkRun, without_cyclic_gc
from ipgeo.bulk.chunks import Chunk, chunk_file
from ipgeo.bulk.errors import BulkError
from ipgeo.bulk.options import Options, ProgressCallback
from ipgeo.bulk.resolver import FIRST_PLACE, NOT_FOUND, RESERVED
from ipgeo.bulk.sources import CHUNK_SIZE, Source, read_batches
from ipgeo.bulk.summary import BadLine
from ipgeo.bulk.writers import FIRST_FRAGMENT, FRAGMENT
from ipgeo.geo import GeoService


@dataclass(frozen=True)
class ChunkResult:
    """What a chunk run did (JSON-ready); the merge reads the state file, not this."""

    index: int
    lines: int
    rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


class FacetCounts(NamedTuple):
    """The hits of a run by summary facet: reserved, not found, and by place (facet values,
    which are the same in every process; facet ids are not)."""

    reserved: int
    not_found: int
    places: list[tuple[tuple[Any, ...], int]]

    @classmethod
    def of(cls, run: BulkRun) -> FacetCounts:
        """The facet hits counted by ``run``."""
        hits, facets = run.tally.facet_hits, run.resolver.facets
        places = [
            (tuple(facet), count)
            for facet_id, count in hits.items()
            if facet_id >= FIRST_PLACE and (facet := facets[facet_id]) is not None
        ]
        return cls(hits[RESERVED], hits[NOT_FOUND], places)

    def save(self, handle: BinaryIO) -> None:
        """Write these counts as JSON."""
        handle.write(orjson.dumps(self._asdict()))

    @classmethod
    def load(cls, data: dict[str, Any]) -> FacetCounts:
        """The inverse of ``save`` (``data``: the JSON read back)."""
        places = [(tuple(values), hits) for values, hits in data["places"]]
        return cls(data["reserved"], data["not_found"], places)


@dataclass
class ChunkState:
    """The counts of one chunk, as the merge reads them."""

    lines: int
    skipped: int
    unparseable: int
    rows: int
    unparseable_lines: list[BadLine]
    warnings: list[str]
    facets: FacetCounts  # per-line mode (unique runs count them when their rows are written)
    distinct_v4: npt.NDArray[np.uint32]
    distinct_v6: npt.NDArray[np.bytes_]
    seen: dict[str, int]  # unique mode: hits per IP, in first-seen order


def run_chunk(
    service: GeoService,
    chunk: Chunk,
    options: Options,
    clock: datetime,
    work_dir: Path,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> ChunkResult:
    """Run ``chunk`` with the job's ``clock``; write its rows and state files in ``work_dir``."""
    started = time.monotonic()
    framing = FIRST_FRAGMENT if chunk.index == 0 and not options.unique else FRAGMENT
    rows_path = chunk_file(work_dir, chunk.index, "out")
    rows_partial = _partial(rows_path)
    try:
        with rows_partial.open("wb") as out:
            run = BulkRun(service, options, out, progress, should_cancel, clock, framing)
            run.total_bytes = chunk.length
            source = open_chunk(chunk)
            try:
                with without_cyclic_gc():
                    batches = read_batches(source, options.max_line)
                    run.run_lines(source, batches, chunk.form, chunk.first_line)
                    run.close()
            finally:
                source.close()
        state_path = chunk_file(work_dir, chunk.index, "state")
        state_partial = _partial(state_path)
        with state_partial.open("wb") as handle:
            _save_state(handle, run)
        rows_partial.replace(rows_path)
        state_partial.replace(state_path)
    except BaseException:
        rows_partial.unlink(missing_ok=True)
        raise
    seconds = round(time.monotonic() - started, 3)
    return ChunkResult(chunk.index, run.summary.lines, run.writer.rows, seconds)


def open_chunk(chunk: Chunk) -> Source:
    """The bytes of ``chunk`` as a source (never taken for gzip, whatever its first bytes)."""
    try:
        raw = _Range(chunk.path, chunk.offset, chunk.length)
    except OSError as exc:
        raise BulkError(f"{chunk.form.name}: cannot open ({exc.strerror or exc})") from None
    stream = io.BufferedReader(raw, CHUNK_SIZE)
    return Source(chunk.form.name, stream, raw, chunk.length, False, True)  # type: ignore[arg-type]


class _Range(io.RawIOBase):
    """``length`` bytes of a file from ``offset`` on; ``tell()`` counts from ``offset``."""

    def __init__(self, path: str, offset: int, length: int) -> None:
        super().__init__()
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
        self._file.seek(offset)
        self._left = length
        self._done = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")[: self._left]
        count = self._file.readinto(view) if len(view) else 0
        self._left -= count or 0
        self._done += count or 0
        return count or 0

    def tell(self) -> int:
        return self._done

    def close(self) -> None:
        self._file.close()
        super().close()


def _partial(path: Path) -> Path:
    return path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.partial")


def _save_state(handle: BinaryIO, run: BulkRun) -> None:
    summary, tally = run.summary, run.tally
    meta = {
        "lines": summary.lines,
        "skipped": summary.skipped,
        "unparseable": summary.unparseable,
        "rows": run.writer.rows,
        "unparseable_lines": [asdict(bad) for bad in summary.unparseable_lines],
        "warnings": summary.warnings,
        "facets": FacetCounts.of(run)._asdict(),
    }
    v4, v6 = tally.distinct.arrays()
    seen_ips = "\n".join(tally.seen).encode()
    np.savez(
        handle,
        meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8),
        v4=v4,
        v6=v6,
        seen_ips=np.frombuffer(seen_ips, dtype=np.uint8),
        seen_hits=np.fromiter(tally.seen.values(), dtype=np.int64, count=len(tally.seen)),
    )


def load_state(work_dir: Path, index: int) -> ChunkState:
    """The state of chunk ``index``; ``BulkError`` when the chunk has none (not done)."""
    path = chunk_file(work_dir, index, "state")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = orjson.loads(data["meta"].tobytes())
            v4, v6 = data["v4"], data["v6"]
            text = data["seen_ips"].tobytes().decode()
            hits = data["seen_hits"].tolist()
    except FileNotFoundError:
        raise BulkError(f"chunk {index} has no result") from None
    ips = text.split("\n") if text else []
    return ChunkState(
        lines=meta["lines"],
        skipped=meta["skipped"],
        unparseable=meta["unparseable"],
        rows=meta["rows"],
        unparseable_lines=[BadLine(**bad) for bad in meta["unparseable_lines"]],
        warnings=meta["warnings"],
        facets=FacetCounts.load(meta["facets"]),
        distinct_v4=v4,
        distinct_v6=v6,
        seen=dict(zip(ips, hits, strict=True)),
    )
