"""The background job operations of the OpenAPI document (``/api/v1/jobs``)."""

from __future__ import annotations

from typing import Any

from ipgeo.bulk import INPUT_FORMATS
from ipgeo.jobs.options import MODES
from ipgeo.jobs.queue import STATUSES
from ipgeo.jobs.results import RESULT_FORMATS

_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_JOB_REF = {"$ref": "#/components/schemas/Job"}
_INT_OR_NULL = {"type": "integer", "nullable": True}
_NUMBER_OR_NULL = {"type": "number", "nullable": True}
_TIME = {"type": "string", "format": "date-time", "nullable": True}

_PROGRESS = {
    "type": "object",
    "nullable": True,
    "description": "Bytes of the input read so far, summed over the job's chunks once it is "
    "cut into them (then of the decompressed input); null until a worker starts the job.",
    "properties": {
        "done": {"type": "integer", "description": "Bytes read."},
        "total": {**_INT_OR_NULL, "description": "Input size, null when unknown."},
        "percent": {**_NUMBER_OR_NULL, "minimum": 0, "maximum": 100},
        "rate": {**_INT_OR_NULL, "description": "Bytes per second."},
        "eta_seconds": {**_INT_OR_NULL, "description": "Seconds left, null when unknown."},
        "lines": {"type": "integer"},
        "rows": {"type": "integer"},
        "lines_per_second": _INT_OR_NULL,
    },
}
_COUNT = {"type": "integer", "minimum": 0}
_CHUNKS = {
    "type": "object",
    "nullable": True,
    "description": "The chunks a worker cut the input into (`IPGEO_JOB_CHUNK_SIZE` each), each "
    "run by any worker, then merged in input order: how many are done, running and waiting. "
    "Null until the input is cut.",
    "required": ["total", "done", "running", "queued"],
    "properties": {"total": _COUNT, "done": _COUNT, "running": _COUNT, "queued": _COUNT},
}
_RANKED = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "key": {"description": "ISO code, region key, city key, ASN or zone name."},
            "name": {"nullable": True},
            "count": {"type": "integer"},
            "share": {"type": "number"},
        },
    },
}
_COUNTS = "lines skipped unparseable valid located reserved not_found distinct_ips rows bytes_read"
_SUMMARY = {
    "type": "object",
    "nullable": True,
    "description": "Present once finished: the counts of `ipgeo bulk` and the top places.",
    "properties": {
        **{name: {"type": "integer"} for name in _COUNTS.split()},
        "seconds": {"type": "number"},
        "sources": {"type": "array", "items": {"type": "string"}},
        "input_formats": {"type": "object", "additionalProperties": {"type": "string"}},
        "top": {"type": "object", "additionalProperties": _RANKED},
        "country_counts": {
            "type": "object",
            "description": "Located lines per ISO country code (the world map).",
            "additionalProperties": {"type": "integer"},
        },
        "unparseable_lines": {"type": "array", "items": {"type": "object"}},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
}
_JOB_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "32 hex digits."},
    "status": {
        "type": "string",
        "enum": list(STATUSES),
        "description": f"`{'`, `'.join(STATUSES)}`.",
    },
    "created_at": {**_TIME, "description": "ISO 8601, UTC."},
    "started_at": {**_TIME, "description": "When a worker took it."},
    "ended_at": {**_TIME, "description": "Set once finished, failed or canceled."},
    "input": {
        "type": "object",
        "description": "The upload's name and size in bytes.",
        "properties": {"name": {"type": "string"}, "bytes": {"type": "integer"}},
    },
    "options": {
        "type": "object",
        "description": "The options the job runs with.",
        "properties": {
            "input_format": {"type": "string", "enum": list(INPUT_FORMATS)},
            "fields": {"type": "array", "nullable": True, "items": {"type": "string"}},
            "unique": {"type": "boolean"},
            "ip_field": {"type": "string", "nullable": True},
            "ip_column": {"type": "string", "nullable": True},
            "expand": {"type": "boolean"},
            "lang": {"type": "string", "nullable": True},
            "top": {"type": "integer"},
        },
    },
    "progress": _PROGRESS,
    "chunks": _CHUNKS,
    "summary": _SUMMARY,
    "error": {
        "type": "object",
        "nullable": True,
        "description": "Failed jobs only: why (`worker_died`, `timeout`, `bad_input`, "
        "`too_large`, `storage_error`...).",
        "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
    },
    "expires_at": {**_TIME, "description": "When an ended job and its files are removed."},
    "queue_position": {**_INT_OR_NULL, "description": "Queued jobs only: jobs ahead."},
    "cancel_requested": {
        "type": "boolean",
        "enum": [True],
        "description": "Present while a running job is asked to stop.",
    },
    "links": {
        "type": "object",
        "description": "URLs of this resource, its web page and its downloads.",
        "required": ["self", "page"],
        "properties": {
            "self": {"type": "string"},
            "page": {"type": "string", "description": "The job's web page."},
            "result": {
                "type": "object",
                "description": "Finished jobs only: one download URL per format.",
                "additionalProperties": {"type": "string"},
            },
        },
    },
}
# Only in some states: queued jobs have a position, running ones a pending cancel request.
_OPTIONAL = ("queue_position", "cancel_requested")
_JOB = {
    "type": "object",
    "required": [name for name in _JOB_PROPERTIES if name not in _OPTIONAL],
    "properties": _JOB_PROPERTIES,
}


def job_schemas() -> dict[str, Any]:
    """The component schemas the job operations refer to."""
    return {"Job": _JOB}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


_CREATED = {
    "allOf": [
        _JOB_REF,
        {
            "type": "object",
            "required": ["owner_token"],
            "properties": {
                "owner_token": {
                    "type": "string",
                    "description": "The job's owner token (also `X-Job-Token` and an HttpOnly "
                    "cookie): send it to list your jobs and to cancel or delete this one. Only "
                    "its hash is stored.",
                }
            },
        },
    ]
}
_TOKEN_HEADER = {
    "name": "X-Job-Token",
    "in": "header",
    "description": "The owner token a job's creation answered (or `Authorization: Bearer`, "
    "or the browser's cookie).",
    "schema": {"type": "string"},
}
_CROSS_ORIGIN = (
    "A page of another site sent it (its `Origin` or `Referer` is not this site), or the "
    "owner token is missing or wrong."
)


def _job(description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _JOB_REF}},
        **extra,
    }


_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("input_format", {"type": "string", "enum": list(INPUT_FORMATS)}, "Input format."),
    ("mode", {"type": "string", "enum": list(MODES)}, "A row per line, or per distinct IP."),
    ("fields", {"type": "string"}, "Comma-separated result columns (as `ipgeo bulk`)."),
    ("ip_field", {"type": "string"}, "JSON key holding the IP (`jsonl`)."),
    ("ip_column", {"type": "string"}, "CSV column holding the IP (`csv`)."),
    ("expand", {"type": "boolean"}, "Expand CIDRs and ranges into addresses."),
    ("lang", {"type": "string"}, "Language of names, e.g. `de`."),
    ("top", {"type": "integer", "minimum": 1, "maximum": 100}, "Length of the top lists."),
]
_UNAVAILABLE = "No job store: `IPGEO_REDIS_URL` is unset or Redis is down."
_NOT_FOUND = "No such job: it never existed, expired or was deleted."
_JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job's id (32 hex digits).",
    "schema": {"type": "string"},
}
_ID_FROM_BODY = {"job_id": "$response.body#/id"}


def jobs_paths() -> dict[str, Any]:
    """The ``/api/v1/jobs`` operations."""
    option_params = [
        {"name": name, "in": "query", "description": text, "schema": schema}
        for name, schema, text in _OPTIONS
    ]
    form = {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "The file to enrich."},
            "text": {"type": "string", "description": "Pasted text, when there is no file."},
            **{name: {**schema, "description": text} for name, schema, text in _OPTIONS},
        },
    }
    raw = {"schema": {"type": "string", "format": "binary"}}
    links = {
        "GetJob": {"operationId": "getJob", "parameters": _ID_FROM_BODY},
        "GetJobResult": {"operationId": "getJobResult", "parameters": _ID_FROM_BODY},
        "CancelJob": {"operationId": "cancelJob", "parameters": _ID_FROM_BODY},
    }
    location = {
        "Location": {"description": "The job's URL.", "schema": {"type": "string"}},
    }
    return {
        "/api/v1/jobs": {
            "post": {
                "operationId": "createJob",
                "summary": "Geolocate a whole file in the background",
                "description": (
                    "Upload an access log, an IP list, CIDRs, JSON lines or CSV, as the "
                    "multipart field `file` (or `text`), or as the raw body. Options are form "
                    "fields or query parameters (query parameters win). The job is queued for "
                    "a worker; poll its `Location` for progress. At most `IPGEO_MAX_UPLOAD`, "
                    "and a form of at most 64 parts. The answer carries the job's owner token; "
                    "send one in `X-Job-Token` to keep new jobs under the same owner. "
                    "Requests whose `Origin` or `Referer` names another site are refused (403)."
                ),
                "tags": ["jobs"],
                "parameters": [
                    *option_params,
                    {
                        "name": "name",
                        "in": "query",
                        "description": "File name to show for a raw body.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {"schema": form},
                        "text/plain": raw,
                        "application/octet-stream": raw,
                    },
                },
                "responses": {
                    "202": {
                        "description": "Queued.",
                        "content": {"application/json": {"schema": _CREATED}},
                        "headers": {
                            **location,
                            "X-Job-Token": {
                                "description": "The owner token.",
                                "schema": {"type": "string"},
                            },
                        },
                        "links": links,
                    },
                    "400": _error("Empty or unreadable upload, or an invalid option."),
                    "403": _error("A page of another site sent it."),
                    "413": _error(
                        "The upload is larger than `IPGEO_MAX_UPLOAD`, or the form has too "
                        "many parts."
                    ),
                    "503": _error(f"{_UNAVAILABLE[:-1]}, or the upload cannot be stored."),
                },
            },
            "get": {
                "operationId": "listJobs",
                "summary": "The latest jobs of the caller's owner token",
                "description": "Without an owner token the list is empty.",
                "tags": ["jobs"],
                "parameters": [_TOKEN_HEADER],
                "responses": {
                    "200": {
                        "description": "Newest first.",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["jobs"],
                                    "properties": {"jobs": {"type": "array", "items": _JOB_REF}},
                                }
                            }
                        },
                    },
                    "503": _error(_UNAVAILABLE),
                },
            },
        },
        "/api/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob",
                "summary": "Status, progress, and the summary or the error of a job",
                "description": "Not rate limited: poll it (`Cache-Control: no-store`).",
                "tags": ["jobs"],
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _job("The job."),
                    "404": _error(_NOT_FOUND),
                    "503": _error(_UNAVAILABLE),
                },
            },
            "delete": {
                "operationId": "cancelJob",
                "summary": "Cancel a queued or running job, or delete an ended one",
                "description": (
                    "A running job stops at its next batch, removes its partial output and "
                    "ends as `canceled`. Only the job's owner may: send its owner token in "
                    "`X-Job-Token` (or `Authorization: Bearer`, or the browser's cookie)."
                ),
                "tags": ["jobs"],
                "parameters": [_JOB_ID],
                "responses": {
                    "200": _job("Canceled at once (it was queued)."),
                    "202": _job("Asked to stop (it is running): poll until `canceled`."),
                    "204": {"description": "The ended job and its files were deleted."},
                    "403": _error(_CROSS_ORIGIN),
                    "404": _error(_NOT_FOUND),
                    "503": _error(_UNAVAILABLE),
                },
            },
        },
        "/api/v1/jobs/{job_id}/result": {
            "get": {
                "operationId": "getJobResult",
                "summary": "Download the result of a finished job",
                "tags": ["jobs"],
                "parameters": [
                    _JOB_ID,
                    {
                        "name": "format",
                        "in": "query",
                        "description": "CSV (default), NDJSON or a JSON array.",
                        "schema": {"type": "string", "enum": list(RESULT_FORMATS)},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "The result, streamed as an attachment.",
                        "headers": {
                            "Content-Disposition": {
                                "description": "`attachment; filename=...`",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            "text/csv": {"schema": {"type": "string"}},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "application/json": {"schema": {"type": "array"}},
                        },
                    },
                    "400": _error("Unknown `format`."),
                    "404": _error(_NOT_FOUND),
                    "409": _error("The job has not finished (or failed, or was canceled)."),
                    "410": _error("The result file was removed."),
                    "503": _error(_UNAVAILABLE),
                },
            }
        },
    }
