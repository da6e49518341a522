"""Where a job's files live in the data directory, and removing those of expired jobs."""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ipgeo.jobs")

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# A directory younger than this is never removed: its upload may still be on its way to a job.
CLEANUP_GRACE = 300.0


def jobs_dir(data_dir: Path) -> Path:
    """The directory holding one sub-directory per job."""
    return data_dir / "jobs"


@dataclass(frozen=True)
class JobFiles:
    """The files of one job: the uploaded input and the NDJSON result (``.partial`` while run)."""

    directory: Path

    @classmethod
    def of(cls, data_dir: Path, job_id: str) -> JobFiles:
        """The files of ``job_id`` under ``data_dir``."""
        return cls(jobs_dir(data_dir) / job_id)

    @property
    def input(self) -> Path:
        """The uploaded input, as received (gzip is detected when it is read)."""
        return self.directory / "input"

    @property
    def result(self) -> Path:
        """The NDJSON result, present only once the job finished."""
        return self.directory / "result.ndjson"

    @property
    def partial(self) -> Path:
        """The result while the engine writes it (removed on cancel or failure)."""
        return self.result.with_name(self.result.name + ".partial")

    @property
    def chunks(self) -> Path:
        """The chunks' work directory: the plan, chunk inputs, outputs and states."""
        return self.directory / "chunks"

    def remove_input(self) -> None:
        """Drop the input once it is no longer needed."""
        self.input.unlink(missing_ok=True)

    def remove_partial(self) -> None:
        """Drop a half-written result."""
        self.partial.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove every file of the job."""
        shutil.rmtree(self.directory, ignore_errors=True)


def job_dirs(data_dir: Path) -> Iterator[Path]:
    """The job directories that exist in ``data_dir``."""
    root = jobs_dir(data_dir)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.is_dir() and JOB_ID_RE.match(path.name):
            yield path


def remove_expired(
    data_dir: Path,
    job_exists: Callable[[str], bool],
    grace: float = CLEANUP_GRACE,
    clock: Callable[[], float] = time.time,
) -> int:
    """Remove the directories of jobs Redis no longer knows (expired or deleted); the count."""
    removed = 0
    for path in job_dirs(data_dir):
        try:
            age = clock() - path.stat().st_mtime
        except OSError:
            continue
        if age < grace or job_exists(path.name):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed += 1
    if removed:
        log.info("removed the files of %d expired job(s)", removed)
    return removed
