"""Why a job failed, in words for people (from its meta or RQ's record of the failure)."""

from __future__ import annotations

import re

from rq.job import Job

_SIGNAL_RE = re.compile(r"\(signal (\d+)\)")


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
