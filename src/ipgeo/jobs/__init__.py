"""Background bulk jobs on RQ (no Flask): submit, run with progress, read, cancel, clean up.

Jobs carry paths, not data: the upload and the result live in ``IPGEO_DATA_DIR/jobs/<id>/``.
"""

from ipgeo.jobs.files import JobFiles
from ipgeo.jobs.options import JobOptionError, JobOptions
from ipgeo.jobs.queue import (
    OWNER_TOKEN_RE,
    QUEUE_NAME,
    Cleaner,
    JobNotFound,
    JobView,
    bulk_queue,
    cancel,
    delete,
    enqueue,
    fetch_job,
    job_view,
    new_job_id,
    new_owner_token,
    owned_by,
    owner_hash,
    recent_jobs,
)
from ipgeo.jobs.results import RESULT_FORMATS, stream_result
from ipgeo.jobs.shared_dir import ensure_marker

__all__ = [
    "OWNER_TOKEN_RE",
    "QUEUE_NAME",
    "RESULT_FORMATS",
    "Cleaner",
    "JobFiles",
    "JobNotFound",
    "JobOptionError",
    "JobOptions",
    "JobView",
    "bulk_queue",
    "cancel",
    "delete",
    "enqueue",
    "ensure_marker",
    "fetch_job",
    "job_view",
    "new_job_id",
    "new_owner_token",
    "owned_by",
    "owner_hash",
    "recent_jobs",
    "stream_result",
]
