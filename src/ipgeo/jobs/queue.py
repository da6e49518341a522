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

from ipgeo.jobs.files import JOB_ID_RE, JobFiles, remove_expired
from ipgeo.jobs.options import JobOptions
from ipgeo.jobs.task import CANCEL_KEY
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
_SIGNAL_RE = re.compile(r"\(signal (\d+)\)")
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
    """The API's status of a job (a cooperatively canceled job finished as ``canceled``)."""
    status = _STATUS.get(job.get_status(refresh=False), "queued")
    if status == "finished" and job.meta.get("state") == "canceled":
        return "canceled"
    return status


def job_error(job: Job) -> dict[str, str] | None:
    """Why a failed job failed, for people: ``{"code", "message"}``."""
    stored = job.meta.get("error")
    if isinstance(stored, dict):
        return {"code": str(stored.get("code")), "message": str(stored.get("message"))}
    result = job.latest_result()
    text = (result.exc_string if result is not None else "") or ""
    if "Work-horse terminated unexpectedly" in text:
        match = _SIGNAL_RE.search(text)
        how = f" (killed by signal {match.group(1)})" if match else ""
        return {
            "code": "worker_died",
            "message": f"the worker process running this job died{how}, for example because it "
            "ran out of memory or was killed; submit the job again",
        }
    if "AbandonedJobError" in text:
        return {
            "code": "worker_lost",
            "message": "the worker running this job stopped responding (it was stopped or lost "
            "its connection to Redis); submit the job again",
        }
    if "JobTimeoutException" in text:
        return {
            "code": "timeout",
            "message": f"the job ran longer than its time limit of {job.timeout} seconds "
            "(IPGEO_JOB_TIMEOUT)",
        }
    if "stopped by user" in text:
        return {"code": "stopped", "message": "the job was stopped from the dashboard"}
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return {"code": "job_failed", "message": lines[-1] if lines else "the job failed"}


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
        }
        if self.status == "queued":
            data["queue_position"] = self.position
        if self.cancel_requested and not self.terminal:
            data["cancel_requested"] = True
        return data


def job_view(connection: redis.Redis, settings: Settings, job: Job) -> JobView:
    """Read a job's state; a job whose worker vanished is failed (or retried) on the way."""
    status = api_status(job)
    if status == "started" and _abandoned(connection, job):
        job.refresh()  # type: ignore[no-untyped-call]
        status = api_status(job)
    summary = None
    if status == "finished":
        value = job.return_value()
        summary = value.get("summary") if isinstance(value, dict) else None
    progress = job.meta.get("progress")
    if status == "finished" and isinstance(progress, dict):
        progress = {**progress, "percent": 100.0, "eta_seconds": 0}
    files = JobFiles.of(settings.data_dir, job.id)
    return JobView(
        id=job.id,
        status=status,
        created_at=_iso(job.created_at),
        started_at=_iso(job.started_at),
        ended_at=_iso(job.ended_at) if status in _TERMINAL else None,
        input=job.meta.get("input") or {},
        options=job.meta.get("options") or {},
        progress=progress,
        summary=summary,
        error=job_error(job) if status == "failed" else None,
        position=job.get_position() if status == "queued" else None,
        cancel_requested=bool(connection.exists(CANCEL_KEY.format(job.id))),
        expires_at=_expires_at(job) if status in _TERMINAL else None,
        has_result=status == "finished" and files.result.is_file(),
    )


def _abandoned(connection: redis.Redis, job: Job) -> bool:
    """Let RQ fail (or retry) started jobs whose worker stopped sending heartbeats."""
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
        return "started"
    return status


def delete(connection: redis.Redis, settings: Settings, job: Job) -> None:
    """Delete an ended job and its files."""
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
