"""JSON API of background bulk jobs: submit, read, download the result, cancel."""

from __future__ import annotations

import logging
import shutil
import unicodedata
from typing import Any
from urllib.parse import quote

import redis
from flask import Blueprint, Response, current_app, request, stream_with_context
from rq.job import Job

from ipgeo import jobs
from ipgeo.settings import Settings
from ipgeo.web.errors import ApiError
from ipgeo.web.job_access import (
    TOKEN_HEADER,
    hand_over,
    owner_token,
    presented_token,
    require_same_origin,
)
from ipgeo.web.uploads import clean_name, receive

jobs_api = Blueprint("jobs_api", __name__)
log = logging.getLogger("ipgeo.web")

_cleaners: dict[int, jobs.Cleaner] = {}


def jobs_settings() -> Settings:
    """The application's settings."""
    settings: Settings = current_app.extensions["ipgeo.settings"]
    return settings


def jobs_redis() -> redis.Redis:
    """The Redis connection jobs live in; 503 when the app has none."""
    guard = current_app.extensions.get("ipgeo.redis")
    if guard is None:
        raise ApiError(
            503,
            "jobs_unavailable",
            "background jobs need Redis: set IPGEO_REDIS_URL (or run `ipgeo serve`)",
        )
    client: redis.Redis = guard.client
    return client


def publish_data_dir(connection: redis.Redis, settings: Settings) -> None:
    """Name this app's data directory in Redis, so that workers can check they share it."""
    try:
        jobs.ensure_marker(connection, settings.data_dir)
    except (OSError, redis.RedisError) as exc:
        log.warning("cannot mark the job directory for workers to check: %s", exc)


def redis_unavailable(exc: redis.RedisError) -> ApiError:
    """The error answered when Redis fails during a job request."""
    return ApiError(503, "redis_unavailable", f"the job store (Redis) is unavailable: {exc}")


def links(view: jobs.JobView) -> dict[str, Any]:
    """URLs of a job's API resource, its page and (once finished) its result formats."""
    base = f"/api/v1/jobs/{view.id}"
    data: dict[str, Any] = {"self": base, "page": f"/jobs/{view.id}"}
    if view.has_result:
        data["result"] = {fmt: f"{base}/result?format={fmt}" for fmt in jobs.RESULT_FORMATS}
    return data


def view_dict(view: jobs.JobView) -> dict[str, Any]:
    """A job as the API answers it."""
    return {**view.to_dict(), "links": links(view)}


def load_job(job_id: str) -> tuple[redis.Redis, Job]:
    """The job ``job_id`` or a 404."""
    connection = jobs_redis()
    try:
        return connection, jobs.fetch_job(connection, job_id)
    except jobs.JobNotFound:
        raise ApiError(
            404, "job_not_found", "no such job: it never existed, expired or was deleted"
        ) from None


def load_job_view(job_id: str) -> jobs.JobView:
    """The view of job ``job_id``: a 404 when there is none, a 503 when Redis fails."""
    try:
        connection, job = load_job(job_id)
        return jobs.job_view(connection, jobs_settings(), job)
    except redis.RedisError as exc:
        raise redis_unavailable(exc) from None


def submit_job() -> tuple[jobs.JobView, str]:
    """Store the request's upload and queue a job for it (shared by the API and the page).

    Returns the job and its owner token.
    """
    require_same_origin()
    token = owner_token()
    settings = jobs_settings()
    connection = jobs_redis()
    job_id = jobs.new_job_id()
    files = jobs.JobFiles.of(settings.data_dir, job_id)
    try:
        files.directory.mkdir(parents=True)
    except OSError as exc:
        raise ApiError(503, "storage_unavailable", f"cannot store the upload: {exc}") from None
    try:
        publish_data_dir(connection, settings)
        name, size, form = receive(files.directory, settings.max_upload)
        values = {**form.to_dict(), **request.args.to_dict()}
        try:
            options = jobs.JobOptions.parse(values)
        except jobs.JobOptionError as exc:
            raise ApiError(400, "invalid_option", str(exc)) from None
        job = jobs.enqueue(
            connection, settings, job_id, options, name, size, jobs.owner_hash(token)
        )
        cleaner = _cleaners.setdefault(id(current_app), jobs.Cleaner(settings.data_dir))
        cleaner.maybe_run(connection)
        return jobs.job_view(connection, settings, job), token
    except redis.RedisError as exc:
        shutil.rmtree(files.directory, ignore_errors=True)
        raise redis_unavailable(exc) from None
    except BaseException:
        shutil.rmtree(files.directory, ignore_errors=True)
        raise


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON answer."""
    from ipgeo.formats import to_json

    return Response(to_json(data), status=status, mimetype="application/json")


@jobs_api.post("/api/v1/jobs")
def create_job() -> Response:
    """Upload a file (multipart field ``file``) or a raw body; the job is queued (202)."""
    view, token = submit_job()
    response = json_response({**view_dict(view), "owner_token": token}, 202)
    response.headers["Location"] = f"/api/v1/jobs/{view.id}"
    hand_over(response, token)
    return response


@jobs_api.get("/api/v1/jobs")
def list_jobs() -> Response:
    """The latest jobs of the caller's owner token (none without one)."""
    connection = jobs_redis()
    try:
        views = jobs.recent_jobs(connection, jobs_settings(), presented_token())
    except redis.RedisError as exc:
        raise redis_unavailable(exc) from None
    response = json_response({"jobs": [view_dict(view) for view in views]})
    response.headers["Cache-Control"] = "no-store"
    response.vary.add("Cookie")
    return response


@jobs_api.get("/api/v1/jobs/<job_id>")
def job_status(job_id: str) -> Response:
    """Status, progress, and the summary (finished) or the error (failed)."""
    view = load_job_view(job_id)
    response = json_response(view_dict(view))
    response.headers["Cache-Control"] = "no-store"
    return response


@jobs_api.get("/api/v1/jobs/<job_id>/result")
def job_result(job_id: str) -> Response:
    """Stream the result as ``?format=csv`` (default), ``ndjson`` or ``json``."""
    fmt = request.args.get("format", "csv")
    if fmt not in jobs.RESULT_FORMATS:
        raise ApiError(
            400, "invalid_format", f"format must be one of {', '.join(jobs.RESULT_FORMATS)}"
        )
    view = load_job_view(job_id)
    if view.status != "finished":
        raise ApiError(409, "result_not_ready", f"the job is {view.status}; it has no result")
    files = jobs.JobFiles.of(jobs_settings().data_dir, job_id)
    if not files.result.is_file():
        raise ApiError(410, "result_gone", "the result file of this job was removed")
    columns = jobs.JobOptions.from_dict(view.options).columns()
    body = jobs.stream_result(files.result, fmt, columns)
    stem = str(view.input.get("name", "upload")).rsplit(".", 1)[0] or "upload"
    response = Response(stream_with_context(body), content_type=jobs.RESULT_FORMATS[fmt])
    response.headers["Content-Disposition"] = attachment(stem, fmt)
    if fmt == "ndjson":
        response.headers["Content-Length"] = str(files.result.stat().st_size)
    return response


def attachment(stem: str, extension: str) -> str:
    """``Content-Disposition`` of a download (RFC 6266): the UTF-8 name and an ASCII fallback."""
    name = f"{clean_name(stem)}-ipgeo.{extension}"
    if name.isascii():
        return f'attachment; filename="{name}"'
    plain = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    fallback = f"{clean_name(plain)}-ipgeo.{extension}"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@jobs_api.delete("/api/v1/jobs/<job_id>")
def cancel_job(job_id: str) -> Response:
    """Cancel a queued or running job (202 while it stops); delete an ended one (204).

    Only the job's owner may: its owner token is required (403 without it).
    """
    require_same_origin()
    settings = jobs_settings()
    try:
        connection, job = load_job(job_id)
        if not jobs.owned_by(job, presented_token()):
            raise ApiError(
                403,
                "not_owner",
                "only the job's owner may cancel or delete it: send its owner token "
                f"({TOKEN_HEADER} or Authorization: Bearer)",
            )
        view = jobs.job_view(connection, settings, job)
        if view.terminal:
            jobs.delete(connection, settings, job)
            return Response(status=204)
        jobs.cancel(connection, settings, job)
        job.refresh()  # type: ignore[no-untyped-call]
        view = jobs.job_view(connection, settings, job)
    except redis.RedisError as exc:
        raise redis_unavailable(exc) from None
    return json_response(view_dict(view), 200 if view.terminal else 202)
