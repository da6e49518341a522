"""A chunked bulk run on this machine: ``ipgeo bulk --jobs N``.

The inputs are cut (``chunks.Splitter``) while up to ``jobs`` forked processes run the chunks
already cut (``chunk_run.run_chunk``; the children share the parent's opened databases), their
per-line rows are put into the output file in order while they run (``follow.RowsFollower``),
and the chunks are merged (``merge.merge``). With one job the chunks run in this process. The
chunk files live in a temporary directory next to the output (under TMPDIR for a stream),
removed however the run ends.
"""

from __future__ import annotations

import math
import multiprocessing
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from multiprocessing.pool import AsyncResult
from pathlib import Path
from typing import Any, BinaryIO

from ipgeo.bulk.chunk_run import run_chunk
from ipgeo.bulk.chunks import DEFAULT_CHUNK_SIZE, Chunk, Splitter
from ipgeo.bulk.engine import check_run
from ipgeo.bulk.errors import Cancelled
from ipgeo.bulk.follow import RowsFollower
from ipgeo.bulk.merge import UniquePart, merge, partial_of, write_unique_part
from ipgeo.bulk.options import Options, Progress, ProgressCallback
from ipgeo.bulk.sources import CHUNK_SIZE, Input, total_size
from ipgeo.bulk.summary import Summary
from ipgeo.geo import GeoService

_WAIT = 0.1  # seconds between looks at progress and cancel while chunks run
_REPORT_EVERY = 0.25  # seconds between the progress reports of a pool process

# What the forked children need (set before the pool forks them).
_shared: dict[str, Any] = {}


def run_parallel(
    service: GeoService,
    inputs: Sequence[Input],
    options: Options,
    output: BinaryIO | str | Path,
    jobs: int,
    chunk_size: int | None = None,
    progress: ProgressCallback | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Summary:
    """Enrich ``inputs`` into ``output`` in chunks over ``jobs`` processes; return the summary
    (the output and summary of ``engine.run`` for the same inputs and options)."""
    check_run(inputs, options)
    size = chunk_size or default_chunk_size(inputs, jobs)
    parent = None  # TMPDIR, for a stream or a device (/dev/null)
    if isinstance(output, str | Path) and (Path(output).is_file() or not Path(output).exists()):
        parent = Path(output).parent  # next to the output: its rows are moved there
    work_dir = Path(tempfile.mkdtemp(prefix="ipgeo-chunks-", dir=parent))
    try:
        splitter = Splitter(options, size, work_dir, should_cancel)
        tracker = _Tracker(progress)
        if jobs <= 1:
            for chunk in splitter.cut(inputs):
                report = tracker.reporter(chunk)
                run_chunk(service, chunk, options, splitter.clock, work_dir, report, should_cancel)
                _drop_input(chunk, work_dir)
            plan = splitter.plan()
            return merge(service, plan, options, work_dir, output, should_cancel=should_cancel)
        follower = None
        if parent is not None and not options.unique:
            follower = RowsFollower(work_dir, partial_of(Path(output)))  # type: ignore[arg-type]
        try:
            return _run_pool(
                service, inputs, options, output, jobs, splitter, tracker, should_cancel, follower
            )
        except BaseException:
            if follower is not None:
                follower.abort()  # stops it and removes the partial output
            raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)


def default_chunk_size(inputs: Sequence[Input], jobs: int) -> int:
    """One chunk per process for inputs of known size (at least ``CHUNK_SIZE`` bytes each),
    else ``DEFAULT_CHUNK_SIZE``."""
    total = total_size(inputs)
    if total is None or jobs <= 1:
        return DEFAULT_CHUNK_SIZE
    return max(CHUNK_SIZE, math.ceil(total / jobs))


def _run_pool(
    service: GeoService,
    inputs: Sequence[Input],
    options: Options,
    output: BinaryIO | str | Path,
    jobs: int,
    splitter: Splitter,
    tracker: _Tracker,
    should_cancel: Callable[[], bool] | None,
    follower: RowsFollower | None,
) -> Summary:
    context = multiprocessing.get_context("fork")
    updates = context.SimpleQueue()
    _shared.update(
        service=service, options=options, clock=splitter.clock, work_dir=splitter.work_dir
    )
    _shared["updates"] = updates
    try:
        with context.Pool(jobs, initializer=_ignore_interrupts) as pool:
            running: list[AsyncResult[Any]] = []
            stopped: BaseException | None = None
            try:
                for chunk in splitter.cut(inputs):
                    tracker.reporter(chunk)
                    running.append(pool.apply_async(_pool_chunk, (chunk,)))
                    tracker.drain(updates)
            except Cancelled:
                raise
            except Exception as exc:  # a chunk before it may have failed first
                stopped = exc
            tracker.cut_done = stopped is None
            for result in running:
                while not result.ready():
                    result.wait(_WAIT)
                    tracker.drain(updates)
                    if should_cancel is not None and should_cancel():
                        raise Cancelled("cancelled")
                result.get()  # the error of the first failed chunk, in input order
            if stopped is not None:
                raise stopped
            tracker.drain(updates)
            plan = splitter.plan()
            placed = None  # the rows the chunks wrote, in order, in the partial output
            if follower is not None and plan.chunks:
                placed = follower.finish(len(plan.chunks))
            elif follower is not None:
                follower.abort()  # no lines: the merge writes the empty document
            return merge(
                service,
                plan,
                options,
                splitter.work_dir,
                output,
                partial(pool.map, _pool_part),
                jobs,
                should_cancel,
                placed,
            )
    finally:
        _shared.clear()


def _ignore_interrupts() -> None:
    # Ctrl-C and SIGTERM are the parent's to handle: it stops the pool and removes the chunks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _pool_chunk(chunk: Chunk) -> None:
    """Run one chunk in a pool process (its progress goes to the parent)."""
    updates = _shared["updates"]
    sent = [0.0]

    def report(state: Progress) -> None:
        # now and then only: the parent reads the queue between its own work of cutting
        now = time.monotonic()
        if now - sent[0] >= _REPORT_EVERY:
            sent[0] = now
            updates.put((chunk.index, state.bytes_done, state.lines, state.rows))

    clock: datetime = _shared["clock"]
    work_dir: Path = _shared["work_dir"]
    run_chunk(_shared["service"], chunk, _shared["options"], clock, work_dir, report)
    _drop_input(chunk, work_dir)


def _pool_part(part: UniquePart) -> None:
    """Render one part of the unique rows in a pool process."""
    clock: datetime = _shared["clock"]
    write_unique_part(_shared["service"], clock, _shared["options"], _shared["work_dir"], part)


def _drop_input(chunk: Chunk, work_dir: Path) -> None:
    """Remove a chunk file once its chunk ran (never an input of the run)."""
    path = Path(chunk.path)
    if path.parent == work_dir:
        path.unlink(missing_ok=True)


@dataclass
class _Tracker:
    """Progress summed over chunks: bytes of the chunks done, lines and rows."""

    progress: ProgressCallback | None
    cut_done: bool = False
    states: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    lengths: dict[int, int] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)

    def reporter(self, chunk: Chunk) -> ProgressCallback:
        """The progress callback of one chunk."""
        self.lengths[chunk.index] = chunk.length
        self.names[chunk.index] = chunk.form.name

        def report(state: Progress) -> None:
            self.update(chunk.index, state.bytes_done, state.lines, state.rows)

        return report

    def drain(self, updates: Any) -> None:
        """Take the progress reports the processes sent."""
        while not updates.empty():
            self.update(*updates.get())

    def update(self, index: int, done: int, lines: int, rows: int) -> None:
        """One chunk's progress: report the sum."""
        self.states[index] = (done, lines, rows)
        if self.progress is None:
            return
        total = sum(self.lengths.values()) if self.cut_done else None
        self.progress(
            Progress(
                source=self.names[index],
                bytes_done=sum(state[0] for state in self.states.values()),
                bytes_total=total,
                lines=sum(state[1] for state in self.states.values()),
                rows=sum(state[2] for state in self.states.values()),
            )
        )
