"""Submitting, reading, canceling and listing bulk jobs on the RQ ``bulk`` queue."""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

from ipgeo.jobs.errors import job_error
from ipgeo.jobs.fanout import (
    CANCEL_KEY,
    ChunkCounts,
    cancel_waiting,
    chunk_count,
    chunk_jobs,
    count_chunks,
    delete_internal,
    merge_job,
    record_outcome,
    remove_work_files,
    summed_progress,
)
from ipgeo.jobs.files import JOB_ID_RE, JobFiles, remove_expired
from ipgeo.jobs.options import JobOptions
from ipgeo.settings import Settings

QUEUE_NAME = "bulk"
JOB_FUNCTION = "ipgeo.jobs.task.run_bulk_job"
OWNER_KEY = "ipgeo:jobs:owned:{}"  # the ids of an owner's jobs, by the token's hash
RECENT_KEPT = 50
STATUSES = ("queued", "started", "finished", "failed", "canceled")
_TERMINAL = frozenset({"finished", "failed", "canceled"})
# RQ's statuses as the API names them (``scheduled``: waiting to be retried).
_STATUS = {
    JobStatus.CREATED: "queued",
    JobStatus.QUEUED: "queued",
    JobStatus.DEFERRED: "queued",
    JobStatus.SCHEDULED: "queued",
    JobStatus.READY_TO_ENQUEUE: "queued",
    JobStatus.RATE_LIMITED: "queued",
    JobStatus.STARTED: "started",
    JobStatus.FINISHED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "failed",
    JobStatus.CANCELED: "canceled",
}
OWNER_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


class JobNotFound(LookupError):
    """No such job (never existed, expired or deleted)."""


def new_job_id() -> str:
    """A random, unguessable job id of 128 bits (also the name of the job's directory)."""
    return secrets.token_hex(16)


def new_owner_token() -> str:
    """A random owner token of 256 bits: who holds it may list and delete the jobs it made."""
    return secrets.token_urlsafe(32)


def owner_hash(token: str) -> str:
    """What is stored of an owner token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def owned_by(job: Job, token: str | None) -> bool:
    """True when ``token`` is the owner token of ``job``."""
    stored = job.meta.get("owner_hash")
    if not token or not isinstance(stored, str):
        return False
    return secrets.compare_digest(stored, owner_hash(token))


def bulk_queue(connection: redis.Redis) -> Queue:
    """The ``bulk`` queue, with the JSON serializer (jobs never carry pickles)."""
    return Queue(QUEUE_NAME, connection=connection, serializer=JSONSerializer)


def fetch_job(connection: redis.Redis, job_id: str) -> Job:
    """The job ``job_id``; raise ``JobNotFound``."""
    if not JOB_ID_RE.match(job_id):
        raise JobNotFound(job_id)
    try:
        return Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    except NoSuchJobError:
        raise JobNotFound(job_id) from None


def enqueue(
    connection: redis.Redis,
    settings: Settings,
    job_id: str,
    options: JobOptions,
    input_name: str,
    input_bytes: int,
    owner: str | None,
) -> Job:
    """Queue the job whose input was stored in its directory; remember it for its owner.

    ``owner`` is the hash of the owner token (``owner_hash``).
    """
    files = JobFiles.of(settings.data_dir, job_id)
    meta = {
        "input": {"name": input_name, "bytes": input_bytes},
        "options": options.to_dict(),
        "owner_hash": owner,
        # Whoever queues the job decides how its input is cut and how often a chunk is retried.
        "chunk_size": settings.job_chunk_size,
        "retries": settings.job_retries,
    }
    job = bulk_queue(connection).enqueue(
        JOB_FUNCTION,
        args=(str(files.directory.resolve()), options.to_dict()),
        job_id=job_id,
        job_timeout=settings.job_timeout,
        result_ttl=settings.job_result_ttl,
        failure_ttl=settings.job_failure_ttl,
        retry=Retry(max=settings.job_retries) if settings.job_retries else None,
        meta=meta,
        description=f"bulk enrichment of {input_name[:80]}",
    )
    if owner is not None:
        key = OWNER_KEY.format(owner)
        with connection.pipeline() as pipe:
            pipe.zadd(key, {job_id: time.time()})
            pipe.zremrangebyrank(key, 0, -RECENT_KEPT - 1)
            pipe.expire(key, max(settings.job_result_ttl, settings.job_failure_ttl))
            pipe.execute()
    return job


def api_status(job: Job) -> str:
    """The API's status of a job: the outcome its merge recorded, else RQ's status of the job
    (a cooperatively canceled job finished as ``canceled``; a cut one runs while its chunks do).
    """
    outcome = job.meta.get("outcome")
    if outcome in _TERMINAL:
        return str(outcome)
    status = _STATUS.get(job.get_status(refresh=False), "queued")
    if status == "finished" and job.meta.get("state") == "canceled":
        return "canceled"
    if status == "finished" and chunk_count(job) is not None:
        return "started"
    return status


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _expires_at(job: Job) -> str | None:
    ttl = job.connection.ttl(job.key)
    if not isinstance(ttl, int) or ttl < 0:
        return None
    return _iso(datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=ttl))


@dataclass
class JobView:
    """What the API and the pages show of a job."""

    id: str
    status: str
    created_at: str | None
    started_at: str | None
    ended_at: str | None
    input: dict[str, Any]
    options: dict[str, Any]
    progress: dict[str, Any] | None
    summary: dict[str, Any] | None
    error: dict[str, str] | None
    position: int | None
    cancel_requested: bool
    expires_at: str | None
    has_result: bool
    chunks: dict[str, int] | None = None

    @property
    def terminal(self) -> bool:
        """True once the job will not change any more."""
        return self.status in _TERMINAL

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (without links, which the web layer adds)."""
        data: dict[str, Any] = {
            "id": self.id,
            "status": self.status,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "input": self.input,
            "options": self.options,
            "progress": self.progress,
            "summary": self.summary,
            "error": self.error,
            "expires_at": self.expires_at,
            "chunks": self.chunks,
        }
        if self.status == "queued":
            data["queue_position"] = self.position
        if self.cancel_requested and not self.terminal:
            data["cancel_requested"] = True
        return data


def job_view(connection: redis.Redis, settings: Settings, job: Job) -> JobView:
    """Read a job's state; a job whose worker vanished is failed (or retried) on the way.

    A job cut into chunks shows its chunks' summed progress and their counts; once every
    chunk stopped after a cancel request, it ends ``canceled`` here.
    """
    status = api_status(job)
    if status == "started" and retry_abandoned(connection):
        job.refresh()  # type: ignore[no-untyped-call]
        status = api_status(job)
    progress = job.meta.get("progress")
    chunks = None
    count = chunk_count(job)
    if count is not None and status == "started":
        items = chunk_jobs(connection, job)
        counts = count_chunks(items)
        status = _settle(connection, settings, job, counts)
        progress, chunks = summed_progress(job, items), counts.to_dict()
    elif count is not None:
        chunks = {"total": count, "done": count if status == "finished" else 0}
        chunks |= {"running": 0, "queued": 0}
    summary = None
    if status == "finished":
        summary = job.meta.get("summary")
        if summary is None:
            value = job.return_value()
            summary = value.get("summary") if isinstance(value, dict) else None
    if status == "finished" and isinstance(progress, dict):
        progress = {**progress, "percent": 100.0, "eta_seconds": 0}
    files = JobFiles.of(settings.data_dir, job.id)
    ended_at = job.meta.get("ended_at") or _iso(job.ended_at)  # the merge's, else RQ's
    return JobView(
        id=job.id,
        status=status,
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        ended_at=ended_at if status in _TERMINAL else None,
        input=job.meta.get("input") or {},
        options=job.meta.get("options") or {},
        progress=progress,
        summary=summary,
        error=job_error(job) if status == "failed" else None,
        position=job.get_position() if status == "queued" else None,
        cancel_requested=bool(connection.exists(CANCEL_KEY.format(job.id))),
        expires_at=_expires_at(job) if status in _TERMINAL else None,
        has_result=status == "finished" and files.result.is_file(),
        chunks=chunks,
    )


def _settle(connection: redis.Redis, settings: Settings, job: Job, counts: ChunkCounts) -> str:
    """The status of a job whose chunks run: ``canceled`` once nothing runs after a cancel
    request, ``failed`` if its merge died (the merge records every other outcome itself)."""
    merge = merge_job(connection, job)
    merge_status = merge.get_status(refresh=False) if merge is not None else None
    files = JobFiles.of(settings.data_dir, job.id)
    if merge is not None and merge_status == JobStatus.FAILED:
        error = job_error(merge) or {"code": "job_failed", "message": "it failed"}
        message = f"merging the chunks: {error['message']}"
        remove_work_files(files)
        files.remove_partial()
        error = {"code": error["code"], "message": message}
        record_outcome(job, "failed", settings.job_failure_ttl, error=error)
        return "failed"
    stopping = connection.exists(CANCEL_KEY.format(job.id))
    if not stopping or counts.running or merge_status == JobStatus.STARTED:
        return "started"
    cancel_waiting(connection, job)  # chunks a retry put back on the queue meanwhile
    remove_work_files(files)
    record_outcome(job, "canceled", settings.job_result_ttl)
    connection.delete(CANCEL_KEY.format(job.id))
    return "canceled"


def retry_abandoned(connection: redis.Redis) -> bool:
    """Let RQ retry (or fail) started jobs whose worker stopped sending heartbeats."""
    registry = StartedJobRegistry(QUEUE_NAME, connection=connection, serializer=JSONSerializer)
    if not registry.get_expired_job_ids():
        return False
    registry.cleanup()
    return True


def cancel(connection: redis.Redis, settings: Settings, job: Job) -> str:
    """Cancel a queued job at once, or ask a running one to stop; the new API status."""
    status = api_status(job)
    if status == "queued":
        with contextlib.suppress(InvalidJobOperation):
            job.cancel()
        connection.expire(job.key, settings.job_result_ttl)
        JobFiles.of(settings.data_dir, job.id).remove()
        return "canceled"
    if status == "started":
        connection.set(CANCEL_KEY.format(job.id), b"1", ex=settings.job_timeout + 60)
        if chunk_count(job) is not None:
            cancel_waiting(connection, job)
            remove_work_files(JobFiles.of(settings.data_dir, job.id))
        return "started"
    return status


def delete(connection: redis.Redis, settings: Settings, job: Job) -> None:
    """Delete an ended job (with its chunk and merge jobs) and its files."""
    delete_internal(connection, job)
    job.delete()
    JobFiles.of(settings.data_dir, job.id).remove()


def recent_jobs(
    connection: redis.Redis, settings: Settings, token: str | None, count: int = 20
) -> list[JobView]:
    """The latest jobs of the owner token ``token``, newest first."""
    if not token or not OWNER_TOKEN_RE.match(token):
        return []
    key = OWNER_KEY.format(owner_hash(token))
    found: list[bytes] = connection.zrevrange(key, 0, count - 1)  # type: ignore[assignment]
    ids = [item.decode() for item in found]
    jobs = Job.fetch_many(ids, connection=connection, serializer=JSONSerializer)
    gone = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
    if gone:
        connection.zrem(key, *gone)
    return [job_view(connection, settings, job) for job in jobs if job is not None]


class Cleaner:
    """Removes files of expired jobs, at most once per ``interval`` seconds."""

    def __init__(self, data_dir: Path, interval: float = 600.0) -> None:
        self.data_dir = data_dir
        self.interval = interval
        self.last = 0.0

    def maybe_run(self, connection: redis.Redis) -> None:
        """Run a cleanup pass if the last one is old enough."""
        now = time.monotonic()
        if self.last and now - self.last < self.interval:
            return
        self.last = now
        self.run(connection)

    def run(self, connection: redis.Redis) -> int:
        """Remove the directories of jobs that Redis no longer has."""
        return remove_expired(
            self.data_dir, lambda job_id: bool(connection.exists(Job.key_for(job_id)))
        )
