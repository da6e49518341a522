"""The job functions run by RQ work-horses: cut a job's input into chunks, enrich a chunk,
merge the chunks' results; the same bulk engine as the CLI, plus progress and cancel.

The worker preloads the lookup service with ``configure()`` before it forks work-horses, so
every job shares the opened databases; a job run elsewhere opens them from the environment.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from ipgeo.bulk import BulkError, Cancelled, Options, Progress, Summary, TooLarge
from ipgeo.bulk.chunk_run import run_chunk
from ipgeo.bulk.chunks import Plan, split
from ipgeo.bulk.merge import merge
from ipgeo.geo import GeoService
from ipgeo.jobs.errors import job_error
from ipgeo.jobs.fanout import (
    CANCEL_KEY,
    cancel_waiting,
    chunk_jobs,
    fan_out,
    record_outcome,
    remove_work_files,
    summed_progress,
)
from ipgeo.jobs.files import JobFiles
from ipgeo.jobs.options import JobOptions
from ipgeo.jobs.queue import bulk_queue
from ipgeo.settings import Settings

log = logging.getLogger("ipgeo.jobs")

# A cancel request is looked for at most this often (the engine asks after every batch).
CANCEL_CHECK_INTERVAL = 0.2

_runtime: dict[str, Any] = {}


class JobInputError(Exception):
    """The input cannot be processed (bad format, too large) or its files cannot be read or
    written: never retried."""


def configure(settings: Settings, service: GeoService) -> None:
    """Preload what jobs need (called by the worker before it forks)."""
    _runtime["settings"] = settings
    _runtime["service"] = service


def _settings() -> Settings:
    if "settings" not in _runtime:
        _runtime["settings"] = Settings.from_env()
    settings: Settings = _runtime["settings"]
    return settings


def _service() -> GeoService:
    if "service" not in _runtime:
        _runtime["service"] = GeoService.from_settings(_settings())
    service: GeoService = _runtime["service"]
    return service


def progress_snapshot(
    state: Progress | None, elapsed: float, finished: bool = False
) -> dict[str, Any]:
    """The API's progress object: bytes ``done`` of ``total``, ``percent``, ``rate``, ETA."""
    if state is None:
        return {
            "done": 0, "total": None, "percent": 100.0 if finished else 0.0, "rate": None,
            "eta_seconds": 0 if finished else None, "lines": 0, "rows": 0,
            "lines_per_second": None,
        }  # fmt: skip
    total = state.bytes_total
    done = total if finished and total is not None else state.bytes_done
    percent = 100.0 if finished else None
    if percent is None and total:
        percent = min(99.9, round(100.0 * done / total, 1))
    rate = done / elapsed if elapsed > 0 else None
    eta: int | None = 0 if finished else None
    if not finished and total and rate:
        eta = max(0, round((total - done) / rate))
    return {
        "done": done,
        "total": total,
        "percent": percent,
        "rate": round(rate) if rate is not None else None,
        "eta_seconds": eta,
        "lines": state.lines,
        "rows": state.rows,
        "lines_per_second": round(state.lines / elapsed) if elapsed > 0 else None,
    }


class ProgressReporter:
    """Saves progress into the job's meta at most once per ``interval`` seconds."""

    def __init__(
        self, job: Job, interval: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.job = job
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.saved_at = self.started
        self.last: Progress | None = None

    def __call__(self, state: Progress) -> None:
        self.last = state
        now = self.clock()
        if now - self.saved_at >= self.interval:
            self.saved_at = now
            self.save()

    def save(self, finished: bool = False) -> None:
        """Write the latest progress to Redis."""
        elapsed = self.clock() - self.started
        self.job.meta["progress"] = progress_snapshot(self.last, elapsed, finished)
        self.job.save_meta()  # type: ignore[no-untyped-call]


class CancelCheck:
    """Tells the engine whether someone asked to cancel the job (a flag key in Redis)."""

    def __init__(self, connection: redis.Redis, job_id: str) -> None:
        self.connection = connection
        self.key = CANCEL_KEY.format(job_id)
        self.checked_at = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self.checked_at < CANCEL_CHECK_INTERVAL:
            return False
        self.checked_at = now
        return self.requested()

    def requested(self) -> bool:
        """Ask Redis now."""
        return bool(self.connection.exists(self.key))


def result_summary(summary: Summary, top: int) -> dict[str, Any]:
    """The job's summary: the engine's, with top lists cut to ``top`` and all country counts."""
    data = summary.to_dict()
    countries = data["top"].get("countries", [])
    data["top"] = {name: items[:top] for name, items in data["top"].items()}
    data["country_counts"] = {item["key"]: item["count"] for item in countries}
    return data


def too_large_message(exc: TooLarge) -> str:
    """What a job that went past a bound says, naming the setting of the bound."""
    setting = "IPGEO_JOB_MAX_ROWS" if exc.bound == "rows" else "IPGEO_JOB_MAX_INPUT"
    return f"{exc}: the limit is {setting}={exc.limit}"


def input_error(job: Job, exc: BulkError | OSError) -> JobInputError:
    """Record why the input cannot be processed (never retried); the exception to raise.

    ``bad_input`` and ``too_large`` are the input's; ``storage_error`` is the job files' (an
    ``OSError``: the disk is full, the shared volume went away).
    """
    code, message = "bad_input", str(exc)
    if isinstance(exc, OSError):
        code = "storage_error"
        message = f"cannot read the upload or write the result: {exc.strerror or exc}"
    elif isinstance(exc, TooLarge):
        code, message = "too_large", too_large_message(exc)
    job.retries_left = 0  # bad input stays bad: never retried
    job.meta["error"] = {"code": code, "message": message}
    job.save_meta()  # type: ignore[no-untyped-call]
    return JobInputError(message)


def _engine_options(options: dict[str, Any]) -> Options:
    settings = _settings()
    return replace(
        JobOptions.from_dict(options).engine_options(),
        max_rows=settings.job_max_rows,
        max_input=settings.job_max_input,
    )


def _current_job() -> Job:
    job = get_current_job()
    if job is None:
        raise RuntimeError("jobs run inside an RQ worker")
    return job


def _canceled(job: Job, reporter: ProgressReporter | None = None) -> dict[str, Any]:
    job.meta["state"] = "canceled"
    if reporter is not None:
        reporter.save()
    else:
        job.save_meta()  # type: ignore[no-untyped-call]
    log.info("job %s canceled", job.id)
    return {"canceled": True}


def run_bulk_job(job_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Cut the job's input into chunks and queue a job per chunk and their merge."""
    job = _current_job()
    files = JobFiles(Path(job_dir))
    settings = _settings()
    reporter = ProgressReporter(job, settings.job_progress_interval)
    if not files.input.exists():
        # Canceled while a worker was already taking it off the queue: nothing to do.
        return _canceled(job, reporter)
    reporter.save()
    name = str((job.meta.get("input") or {}).get("name") or "upload")
    cancel = CancelCheck(job.connection, job.id)
    chunk_size = int(job.meta.get("chunk_size") or settings.job_chunk_size)
    try:
        files.chunks.mkdir(exist_ok=True)
        with files.input.open("rb") as stream:
            plan = split(
                [(name, stream)], _engine_options(options), chunk_size, files.chunks, cancel
            )
        plan.save(files.chunks)
    except Cancelled:
        remove_work_files(files)
        job.connection.delete(CANCEL_KEY.format(job.id))
        return _canceled(job, reporter)
    except (BulkError, OSError) as exc:
        remove_work_files(files)
        raise input_error(job, exc) from None
    upload = files.input.resolve()
    if all(Path(chunk.path).resolve() != upload for chunk in plan.chunks):
        files.remove_input()  # the chunks hold copies (a gzip upload, decompressed)
    count = len(plan.chunks)
    job.meta["chunks"] = count
    job.meta["bytes_total"] = sum(chunk.length for chunk in plan.chunks)
    job.save_meta()  # type: ignore[no-untyped-call]
    fan_out(bulk_queue(job.connection), job, job_dir, options, count)
    if cancel.requested():  # asked while the chunks were being queued: the web saw none yet
        cancel_waiting(job.connection, job)
    # The job (what the API shows) lives on until the merge records the outcome and its TTL.
    timeout = int(job.timeout or settings.job_timeout)
    job.result_ttl = timeout * (count + 2) + max(settings.job_result_ttl, settings.job_failure_ttl)
    log.info("job %s: %d chunk(s) queued", job.id, count)
    return {"chunks": count}


def run_chunk_job(job_dir: str, options: dict[str, Any], index: int) -> dict[str, Any]:
    """Enrich chunk ``index`` of a job (an internal job); its progress goes to its meta."""
    job = _current_job()
    parent = str(job.meta["parent"])
    files = JobFiles(Path(job_dir))
    settings = _settings()
    reporter = ProgressReporter(job, settings.job_progress_interval)
    cancel = CancelCheck(job.connection, parent)
    if cancel.requested():
        return _canceled(job, reporter)
    reporter.save()
    try:
        plan = Plan.load(files.chunks)
        chunk = plan.chunks[index]
        result = run_chunk(
            _service(), chunk, _engine_options(options), plan.now(), files.chunks, reporter, cancel
        )
    except Cancelled:
        remove_work_files(files)
        return _canceled(job, reporter)
    except (BulkError, OSError) as exc:
        if cancel.requested():  # its files were removed under it
            return _canceled(job, reporter)
        raise input_error(job, exc) from None
    if cancel.requested():  # it wrote its output after the canceling request removed files
        remove_work_files(files)
        return _canceled(job, reporter)
    if Path(chunk.path).parent == files.chunks:
        Path(chunk.path).unlink(missing_ok=True)  # a copy of the input: only its rows count now
    reporter.save(finished=True)
    data: dict[str, Any] = result.to_dict()
    return data


def run_merge_job(job_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Merge the chunks' results into the job's result (an internal job, after every chunk)."""
    job = _current_job()
    connection = job.connection
    parent = Job.fetch(str(job.meta["parent"]), connection=connection, serializer=JSONSerializer)
    files = JobFiles(Path(job_dir))
    settings = _settings()
    if CancelCheck(connection, parent.id).requested():
        return _merge_canceled(parent, files, settings)
    chunks = chunk_jobs(connection, parent)
    for index, chunk in enumerate(chunks):
        if chunk is None or chunk.get_status(refresh=False) != JobStatus.FINISHED:
            error = chunk_error(chunk, index, len(chunks))
            remove_work_files(files)
            record_outcome(parent, "failed", settings.job_failure_ttl, error=error)
            log.warning("job %s failed: %s", parent.id, error["message"])
            return {"failed": error}
    job_options = JobOptions.from_dict(options)
    try:
        summary = merge(
            _service(), Plan.load(files.chunks), _engine_options(options), files.chunks,
            files.result, should_cancel=CancelCheck(connection, parent.id),
        )  # fmt: skip
    except Cancelled:
        return _merge_canceled(parent, files, settings)
    except (BulkError, OSError) as exc:
        files.remove_partial()
        remove_work_files(files)
        input_error(parent, exc)
        record_outcome(parent, "failed", settings.job_failure_ttl)
        return {"failed": parent.meta["error"]}
    remove_work_files(files)
    if CancelCheck(connection, parent.id).requested():
        return _merge_canceled(parent, files, settings)
    data = result_summary(summary, job_options.top)
    progress = {**summed_progress(parent, chunks), "percent": 100.0, "eta_seconds": 0}
    record_outcome(parent, "finished", settings.job_result_ttl, summary=data, progress=progress)
    return {"finished": True}


def _merge_canceled(parent: Job, files: JobFiles, settings: Settings) -> dict[str, Any]:
    files.result.unlink(missing_ok=True)
    files.remove_partial()
    remove_work_files(files)
    record_outcome(parent, "canceled", settings.job_result_ttl)
    parent.connection.delete(CANCEL_KEY.format(parent.id))
    return {"canceled": True}


def chunk_error(chunk: Job | None, index: int, count: int) -> dict[str, str]:
    """Why a chunk did not finish: its input's error as is, any other naming the chunk."""
    if chunk is None:
        return {"code": "job_failed", "message": f"chunk {index + 1} of {count} was lost"}
    if chunk.get_status(refresh=False) == JobStatus.CANCELED:
        return {"code": "canceled", "message": f"chunk {index + 1} of {count} was canceled"}
    stored = chunk.meta.get("error")
    if isinstance(stored, dict):  # bad input: the same error as a single run
        return {"code": str(stored.get("code")), "message": str(stored.get("message"))}
    error = job_error(chunk) or {"code": "job_failed", "message": "it failed"}
    return {"code": error["code"], "message": f"chunk {index + 1} of {count}: {error['message']}"}
