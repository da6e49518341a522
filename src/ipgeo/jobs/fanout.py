"""A job's internal RQ jobs: one per chunk of its input and the merge that depends on them all.

The user's job (its id is the one the API knows) cuts the input in a worker and queues the
chunk jobs and the merge, then ends; its meta then says how many chunks there are, and the
merge records the outcome (``finished``, ``failed`` or ``canceled``) in it. Internal jobs
have ids such as ``<id>-chunk-000003`` and ``<id>-merge``, which the API never accepts.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer

from ipgeo.jobs.files import JobFiles

CANCEL_KEY = "ipgeo:jobs:cancel:{}"  # set while a job (and so its chunks) should stop
CHUNK_FUNCTION = "ipgeo.jobs.task.run_chunk_job"
MERGE_FUNCTION = "ipgeo.jobs.task.run_merge_job"
_WAITING = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.CREATED})


def chunk_id(job_id: str, index: int) -> str:
    """The id of chunk ``index`` (0-based, in input order) of job ``job_id``."""
    return f"{job_id}-chunk-{index:06d}"


def merge_id(job_id: str) -> str:
    """The id of the merge job of job ``job_id``."""
    return f"{job_id}-merge"


def chunk_count(job: Job) -> int | None:
    """How many chunks the job was cut into (``None`` while it is not cut yet)."""
    count = job.meta.get("chunks")
    return count if isinstance(count, int) else None


def fan_out(queue: Queue, job: Job, job_dir: str, options: dict[str, Any], count: int) -> None:
    """Queue a job per chunk and the merge that runs once they all ended (failed ones too)."""
    timeout = job.timeout
    retries = int(job.meta.get("retries") or 0)
    common: dict[str, Any] = {
        "timeout": timeout,
        "result_ttl": job.result_ttl,
        "failure_ttl": job.failure_ttl,
        "retry": Retry(max=retries) if retries else None,
        "meta": {"parent": job.id},
    }
    chunks = queue.enqueue_many(
        [
            Queue.prepare_data(
                CHUNK_FUNCTION,
                args=(job_dir, options, index),
                job_id=chunk_id(job.id, index),
                description=f"chunk {index + 1} of {count} of job {job.id}",
                **common,
            )
            for index in range(count)
        ]
    )
    queue.enqueue(
        MERGE_FUNCTION,
        args=(job_dir, options),
        job_id=merge_id(job.id),
        description=f"merge of the {count} chunk(s) of job {job.id}",
        depends_on=Dependency(jobs=chunks, allow_failure=True) if chunks else None,
        job_timeout=timeout,
        result_ttl=common["result_ttl"],
        failure_ttl=common["failure_ttl"],
        meta=common["meta"],
    )


def chunk_jobs(connection: redis.Redis, job: Job) -> list[Job | None]:
    """The job's chunk jobs in input order (``None`` for one Redis no longer has)."""
    ids = [chunk_id(job.id, index) for index in range(chunk_count(job) or 0)]
    return list(Job.fetch_many(ids, connection=connection, serializer=JSONSerializer))


def merge_job(connection: redis.Redis, job: Job) -> Job | None:
    """The job's merge job, if Redis has it."""
    found = Job.fetch_many([merge_id(job.id)], connection=connection, serializer=JSONSerializer)
    return found[0]


@dataclass(frozen=True)
class ChunkCounts:
    """How many of a job's chunks are done, running and waiting."""

    total: int
    done: int
    running: int
    queued: int

    def to_dict(self) -> dict[str, int]:
        """The API's ``chunks`` object."""
        return {
            "total": self.total,
            "done": self.done,
            "running": self.running,
            "queued": self.queued,
        }


def count_chunks(chunks: list[Job | None]) -> ChunkCounts:
    """Count chunks by state (a failed or canceled chunk is neither done nor waiting)."""
    statuses = [chunk.get_status(refresh=False) if chunk else None for chunk in chunks]
    return ChunkCounts(
        total=len(chunks),
        done=sum(status == JobStatus.FINISHED for status in statuses),
        running=sum(status == JobStatus.STARTED for status in statuses),
        queued=sum(status in _WAITING for status in statuses),
    )


def summed_progress(job: Job, chunks: list[Job | None]) -> dict[str, Any]:
    """The job's progress: its chunks' bytes, lines and rows summed, rate since it started."""
    total = int(job.meta.get("bytes_total") or 0)
    done = lines = rows = 0
    for chunk in chunks:
        progress = chunk.meta.get("progress") if chunk is not None else None
        if isinstance(progress, dict):
            done += int(progress.get("done") or 0)
            lines += int(progress.get("lines") or 0)
            rows += int(progress.get("rows") or 0)
    started = job.started_at
    elapsed = (datetime.now(UTC) - started).total_seconds() if started else 0.0
    rate = done / elapsed if elapsed > 0 else None
    return {
        "done": done,
        "total": total,
        "percent": min(99.9, round(100.0 * done / total, 1)) if total else 0.0,
        "rate": round(rate) if rate is not None else None,
        "eta_seconds": max(0, round((total - done) / rate)) if rate else None,
        "lines": lines,
        "rows": rows,
        "lines_per_second": round(lines / elapsed) if elapsed > 0 else None,
    }


def cancel_waiting(connection: redis.Redis, job: Job) -> None:
    """Cancel the job's chunks that have not started, and its merge."""
    merge = merge_job(connection, job)
    for item in [*chunk_jobs(connection, job), merge]:
        if item is not None and item.get_status(refresh=False) in _WAITING:
            with contextlib.suppress(InvalidJobOperation):
                item.cancel()


def record_outcome(job: Job, outcome: str, ttl: int, **meta: Any) -> None:
    """Record how the job ended (and its summary or error) and keep it ``ttl`` seconds."""
    ended_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    job.meta.update(meta, outcome=outcome, ended_at=ended_at)
    job.save_meta()  # type: ignore[no-untyped-call]
    if outcome == "canceled":  # RQ (and rq-dashboard) file it as canceled too
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()
    job.connection.expire(job.key, ttl)


def remove_work_files(files: JobFiles) -> None:
    """Drop the chunks (inputs, outputs, partial files) and the upload."""
    shutil.rmtree(files.chunks, ignore_errors=True)
    files.remove_input()


def delete_internal(connection: redis.Redis, job: Job) -> None:
    """Delete the job's chunk and merge jobs."""
    for item in [*chunk_jobs(connection, job), merge_job(connection, job)]:
        if item is not None:
            item.delete()
