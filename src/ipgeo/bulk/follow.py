"""Putting the per-line rows of a chunked run into the output while its chunks still run.

A chunk's rows file is final once the chunk's state file exists (``chunk_run`` renames the
rows first). The follower moves the first chunk's rows to ``<output>.partial`` when that chunk
is done, then appends each next chunk's rows in input order, copying (in the kernel) what its
chunk has written so far while it still writes: when the last chunk ends, little is left to
copy. ``merge(..., placed=True)`` then only cuts and closes the document.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import BinaryIO, cast

from ipgeo.bulk.chunks import chunk_file
from ipgeo.bulk.merge import Stop, copy_bytes

_IDLE = 0.005  # seconds between looks when no chunk has new rows


class RowsFollower:
    """A thread that assembles ``partial`` from the rows files in ``work_dir``, in order."""

    def __init__(self, work_dir: Path, partial: Path) -> None:
        self.work_dir = work_dir
        self.partial = partial
        self._count: int | None = None  # chunks in all, once the cutting is done
        self._stop = Stop(None)
        self._wake = threading.Event()
        self._error: BaseException | None = None
        self._source: tuple[int, BinaryIO, int] | None = None  # index, rows file, bytes copied
        self.sizes: list[int] = []  # of the rows of each chunk placed
        self._thread = threading.Thread(target=self._run, name="ipgeo-rows-follower")
        self._thread.start()

    def finish(self, count: int) -> list[int]:
        """Wait until the rows of all ``count`` chunks (all done) are in ``partial``; return
        the size of each chunk's rows."""
        self._count = count
        self._wake.set()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self.sizes

    def abort(self) -> None:
        """Stop and remove ``partial`` (the run failed or was stopped)."""
        self._stop.abort()
        self._wake.set()
        self._thread.join()
        self.partial.unlink(missing_ok=True)

    def _run(self) -> None:
        try:
            self._assemble()
        except BaseException as exc:  # handed to ``finish``
            self._error = exc

    def _assemble(self) -> None:
        out: BinaryIO | None = None
        index = 0
        try:
            while not self._stop.aborted:
                if self._count is not None and index >= self._count:
                    return
                done = chunk_file(self.work_dir, index, "state").exists()
                if index == 0:
                    if done:
                        chunk_file(self.work_dir, 0, "out").replace(self.partial)
                        # not "ab": copy_file_range refuses a target opened to append
                        out = cast(BinaryIO, self.partial.open("r+b", buffering=0))
                        self.sizes.append(out.seek(0, os.SEEK_END))
                        index = 1
                        continue
                elif self._follow(index, done, cast(BinaryIO, out)):
                    index += 1
                    continue
                self._wake.wait(_IDLE)
                self._wake.clear()
        finally:
            if out is not None:
                out.close()

    def _follow(self, index: int, done: bool, out: BinaryIO) -> bool:
        """Copy what chunk ``index`` wrote since the last look; True once all its rows are in."""
        if self._source is None or self._source[0] != index:
            path = chunk_file(self.work_dir, index, "out")
            if not done:  # still written, under its temporary name
                found = sorted(self.work_dir.glob(f"{path.name}.*.partial"))
                if not found:
                    return False
                path = found[0]
            try:
                self._source = (index, cast(BinaryIO, path.open("rb", buffering=0)), 0)
            except FileNotFoundError:  # renamed meanwhile: look again
                return False
        _, source, copied = self._source
        size = os.fstat(source.fileno()).st_size
        copy_bytes(source, out, size, self._stop, start=copied)
        copied = size
        self._source = (index, source, copied)
        if not done:
            return False
        source.close()
        self._source = None
        self.sizes.append(copied)
        chunk_file(self.work_dir, index, "out").unlink(missing_ok=True)
        return True
