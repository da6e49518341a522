"""Pages of background bulk jobs: upload, a job's live progress and result, recent jobs."""

from __future__ import annotations

import redis
from flask import Blueprint, current_app, redirect, render_template
from werkzeug.wrappers.response import Response as WerkzeugResponse

from ipgeo import jobs
from ipgeo.bulk import INPUT_FORMATS
from ipgeo.web.job_access import hand_over, presented_token
from ipgeo.web.jobs_api import jobs_settings, links, load_job_view, submit_job

job_pages = Blueprint("job_pages", __name__)


@job_pages.app_template_filter("filesize")
def filesize(size: int) -> str:
    """A byte count for people, in binary units: ``512 bytes``, ``33.7 MiB``, ``1.0 GiB``."""
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@job_pages.get("/jobs")
def upload() -> str:
    """The upload form and the caller's recent jobs."""
    settings = jobs_settings()
    guard = current_app.extensions.get("ipgeo.redis")
    recent: list[jobs.JobView] = []
    error = None
    if guard is None:
        error = "Background jobs need Redis: set IPGEO_REDIS_URL (or use `ipgeo serve`)."
    else:
        try:
            recent = jobs.recent_jobs(guard.client, settings, presented_token())
        except redis.RedisError:
            error = "The job store (Redis) is unavailable right now; try again in a moment."
    return render_template(
        "jobs.html",
        recent=recent,
        unavailable=error,
        max_upload=settings.max_upload,
        input_formats=INPUT_FORMATS,
    )


@job_pages.post("/jobs")
def upload_form() -> WerkzeugResponse:
    """The upload form's target without JavaScript: queue the job, then show its page."""
    view, token = submit_job()
    response = redirect(f"/jobs/{view.id}", code=303)
    hand_over(response, token)
    return response


@job_pages.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    """A job: live progress while it runs, then its summary, map and downloads."""
    view = load_job_view(job_id)
    return render_template("job.html", job=view, links=links(view), data=view_dict_for_page(view))


def view_dict_for_page(view: jobs.JobView) -> dict[str, object]:
    """What the page's script starts from."""
    return {**view.to_dict(), "links": links(view)}
