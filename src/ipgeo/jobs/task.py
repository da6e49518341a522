"""The job function run by the RQ work-horse: the bulk engine, as the CLI runs it, plus progress.

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
from rq.job import Job

from ipgeo.bulk import BulkError, Cancelled, Progress, Summary, TooLarge, run
from ipgeo.geo import GeoService
from ipgeo.jobs.files import JobFiles
from ipgeo.jobs.options import JobOptions
from ipgeo.settings import Settings

log = logging.getLogger("ipgeo.jobs")

CANCEL_KEY = "ipgeo:jobs:cancel:{}"
# A cancel request is looked for at most this often (the engine asks after every batch).
CANCEL_CHECK_INTERVAL = 0.2

_runtime: dict[str, Any] = {}


class JobInputError(Exception):
    """The input cannot be processed (bad format, unreadable): never retried."""


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


def run_bulk_job(job_dir: str, options: dict[str, Any]) -> dict[str, Any]:
    """Enrich the job's input into its NDJSON result; the summary is the job's return value."""
    job = get_current_job()
    if job is None:
        raise RuntimeError("run_bulk_job runs inside an RQ worker")
    files = JobFiles(Path(job_dir))
    job_options = JobOptions.from_dict(options)
    settings = _settings()
    reporter = ProgressReporter(job, settings.job_progress_interval)
    if not files.input.exists():
        # Canceled while a worker was already taking it off the queue: nothing to do.
        job.meta["state"] = "canceled"
        reporter.save()
        return {"canceled": True}
    reporter.save()
    name = str((job.meta.get("input") or {}).get("name") or "upload")
    engine_options = replace(
        job_options.engine_options(),
        max_rows=settings.job_max_rows,
        max_input=settings.job_max_input,
    )
    try:
        with files.input.open("rb") as stream:
            summary = run(
                _service(),
                [(name, stream)],
                engine_options,
                files.result,
                progress=reporter,
                should_cancel=CancelCheck(job.connection, job.id),
            )
    except Cancelled:
        files.remove_partial()
        files.remove_input()
        job.meta["state"] = "canceled"
        reporter.save()
        job.connection.delete(CANCEL_KEY.format(job.id))
        log.info("job %s canceled", job.id)
        return {"canceled": True}
    except (BulkError, OSError) as exc:
        files.remove_partial()
        code, message = "bad_input", str(exc)
        if isinstance(exc, OSError):
            message = f"cannot read the upload or write the result: {exc.strerror or exc}"
        elif isinstance(exc, TooLarge):
            code, message = "too_large", too_large_message(exc)
        job.retries_left = 0  # bad input stays bad: never retried
        job.meta["error"] = {"code": code, "message": message}
        job.save_meta()  # type: ignore[no-untyped-call]
        raise JobInputError(message) from None
    reporter.save(finished=True)
    files.remove_input()
    return {"summary": result_summary(summary, job_options.top)}
