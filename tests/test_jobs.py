"""Jobs API and pages through the Flask client on a real (pytest-redis) Redis, and the pieces."""

from __future__ import annotations

import errno
import io
import os
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from flask import Flask
from rq.job import Job, Retry
from rq.serializers import JSONSerializer

from ipgeo.bulk import BulkError, Options, Progress, TooLarge, run
from ipgeo.geo import GeoService
from ipgeo.jobs import JobOptionError, JobOptions, stream_result
from ipgeo.jobs.files import job_dirs, remove_expired
from ipgeo.jobs.task import JobInputError, input_error, progress_snapshot
from ipgeo.settings import Settings, SettingsError

IPS = b"8.8.8.8\n81.2.69.142\n10.0.0.1\nnot-an-ip\n2001:4860:4860::8888\n"


@pytest.fixture()
def jobs_app(make_app: Callable[..., Flask], redis_url: str, tmp_path: Path) -> Flask:
    return make_app(
        IPGEO_REDIS_URL=redis_url,
        IPGEO_DATA_DIR=str(tmp_path),
        IPGEO_MAX_UPLOAD="2K",
        IPGEO_RATE_LIMIT="3/minute",
    )


def _job(redis_url: str, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis.Redis.from_url(redis_url), serializer=JSONSerializer)


def test_raw_body_is_queued_with_its_options(
    jobs_app: Flask, redis_url: str, tmp_path: Path
) -> None:
    client = jobs_app.test_client()
    response = client.post(
        "/api/v1/jobs?name=my%20ips.txt&mode=unique&fields=ip,country_iso,hits", data=IPS
    )
    assert response.status_code == 202, response.json
    body = response.json
    assert body["status"] == "queued"
    assert body["input"] == {"name": "my ips.txt", "bytes": len(IPS)}
    assert body["options"]["unique"] is True
    assert body["options"]["fields"] == ["ip", "country_iso", "hits"]
    assert response.headers["Location"] == f"/api/v1/jobs/{body['id']}"
    assert (tmp_path / "jobs" / body["id"] / "input").read_bytes() == IPS
    job = _job(redis_url, body["id"])
    assert job.origin == "bulk"
    assert job.func_name == "ipgeo.jobs.task.run_bulk_job"
    assert job.args[0] == str((tmp_path / "jobs" / body["id"]).resolve())  # a path, not data
    assert job.timeout == 3600
    assert job.result_ttl == 86400
    assert job.failure_ttl == 7 * 86400
    raw = redis.Redis.from_url(redis_url).hget(job.key, "data")
    assert raw is not None
    assert zlib.decompress(raw).startswith(b'["ipgeo.jobs.task.run_bulk_job"')  # JSON, no pickle
    status = client.get(f"/api/v1/jobs/{body['id']}")
    assert status.status_code == 200
    assert status.json["queue_position"] == 0
    assert status.headers["Cache-Control"] == "no-store"


def test_multipart_upload_and_pasted_text(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    response = client.post(
        "/api/v1/jobs",
        data={"file": (io.BytesIO(IPS), "../../etc/ips.txt"), "input_format": "ips"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    assert response.json["input"]["name"] == "ips.txt"
    assert response.json["options"]["input_format"] == "ips"
    pasted = client.post(
        "/api/v1/jobs", data={"text": "8.8.8.8\n1.1.1.1"}, content_type="multipart/form-data"
    )
    assert pasted.status_code == 202
    assert pasted.json["input"] == {"name": "pasted text", "bytes": 16}


@pytest.mark.parametrize("multipart", [False, True])
def test_uploads_beyond_the_limit_get_413(jobs_app: Flask, tmp_path: Path, multipart: bool) -> None:
    client = jobs_app.test_client()
    big = b"8.8.8.8\n" * 400  # 3,200 bytes > 2K
    if multipart:
        response = client.post(
            "/api/v1/jobs",
            data={"file": (io.BytesIO(big), "big.txt")},
            content_type="multipart/form-data",
        )
    else:
        response = client.post("/api/v1/jobs", data=big)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "too_large"
    assert "IPGEO_MAX_UPLOAD" in response.json["error"]["message"]
    assert not list(job_dirs(tmp_path))  # nothing left behind


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("?input_format=xml", "invalid_option"),
        ("?mode=sometimes", "invalid_option"),
        ("?fields=ip,nonsense", "invalid_option"),
        ("?fields=hits", "invalid_option"),  # hits exists in unique mode only
        ("?lang=../../x", "invalid_option"),
        ("?top=0", "invalid_option"),
        ("?top=%D9%A1%D9%A2", "invalid_option"),  # Arabic-Indic digits are not a number here
    ],
)
def test_bad_options_get_400(jobs_app: Flask, query: str, code: str) -> None:
    response = jobs_app.test_client().post(f"/api/v1/jobs{query}", data=IPS)
    assert response.status_code == 400
    assert response.json["error"]["code"] == code


def test_empty_uploads_get_400(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    assert client.post("/api/v1/jobs", data=b"").json["error"]["code"] == "empty_upload"
    response = client.post("/api/v1/jobs", data={}, content_type="multipart/form-data")
    assert response.status_code == 400
    assert response.json["error"]["code"] == "empty_upload"


@pytest.mark.parametrize("job_id", ["0" * 32, "nope", "A" * 32, "0" * 31 + "g"])
def test_unknown_jobs_get_404(jobs_app: Flask, job_id: str) -> None:
    client = jobs_app.test_client()
    for method, path in [
        ("get", f"/api/v1/jobs/{job_id}"),
        ("get", f"/api/v1/jobs/{job_id}/result"),
        ("delete", f"/api/v1/jobs/{job_id}"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "job_not_found"
    page = client.get(f"/jobs/{job_id}", headers={"Accept": "text/html"})
    assert page.status_code == 404
    assert page.mimetype == "text/html"


def test_result_of_a_queued_job_is_409_and_bad_format_400(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    job_id = client.post("/api/v1/jobs", data=IPS).json["id"]
    assert client.get(f"/api/v1/jobs/{job_id}/result").status_code == 409
    response = client.get(f"/api/v1/jobs/{job_id}/result?format=xml")
    assert response.status_code == 400


def test_status_polling_is_not_rate_limited(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    job_id = client.post("/api/v1/jobs", data=IPS).json["id"]
    for _ in range(20):  # the limit is 3/minute
        assert client.get(f"/api/v1/jobs/{job_id}").status_code == 200
    statuses = [client.get("/api/v1/jobs").status_code for _ in range(4)]
    assert 429 in statuses  # everything else is still limited


def test_recent_jobs_are_per_owner_token(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    mine = client.post("/api/v1/jobs", data=IPS).json["id"]
    # Another client (here from another address, as the rate limit is 3/minute) without the
    # token does not see them.
    elsewhere = {"REMOTE_ADDR": "192.0.2.7"}
    other = jobs_app.test_client()
    theirs = other.post("/api/v1/jobs", data=IPS, environ_base=elsewhere).json["id"]
    listed = [job["id"] for job in client.get("/api/v1/jobs").json["jobs"]]
    assert mine in listed
    assert theirs not in listed
    page = client.get("/jobs")
    assert page.status_code == 200
    assert f"/jobs/{mine}" in page.text
    assert f"/jobs/{theirs}" not in page.text
    assert jobs_app.test_client().get("/api/v1/jobs", environ_base=elsewhere).json["jobs"] == []


def test_upload_form_without_javascript_redirects_to_the_job(jobs_app: Flask) -> None:
    client = jobs_app.test_client()
    response = client.post(
        "/jobs",
        data={"file": (io.BytesIO(IPS), "ips.txt"), "mode": "per-line"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 200
    assert "Waiting for a worker" in page.text
    foreign = client.post(
        "/jobs",
        data={"text": "8.8.8.8"},
        content_type="multipart/form-data",
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403


def test_without_redis_jobs_answer_503(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    response = client.post("/api/v1/jobs", data=IPS)
    assert response.status_code == 503
    assert response.json["error"]["code"] == "jobs_unavailable"
    page = client.get("/jobs")
    assert page.status_code == 200
    assert "Background jobs are not available" in page.text
    assert client.get("/admin/rq/").status_code == 404


def test_dashboard_is_absent_without_credentials(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url, IPGEO_DASHBOARD_USER="admin").test_client()
    assert client.get("/admin/rq/").status_code == 404


def test_dashboard_allowlist_comes_before_the_password(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    app = make_app(
        IPGEO_REDIS_URL=redis_url,
        IPGEO_DASHBOARD_USER="admin",
        IPGEO_DASHBOARD_PASSWORD="pw",
        IPGEO_ALLOWED="10.0.0.0/8",
    )
    client = app.test_client()
    import base64

    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:pw").decode()}
    assert client.get("/admin/rq/", headers=auth).status_code == 403
    inside = client.get("/admin/rq/", headers=auth, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert inside.status_code == 200
    assert "unsafe-inline" in inside.headers["Content-Security-Policy"]
    bare = client.get("/admin/rq/", environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert bare.status_code == 401
    assert bare.headers["WWW-Authenticate"].startswith("Basic")


def test_job_options_parse() -> None:
    options = JobOptions.parse({"mode": "unique", "fields": "ip, hits", "top": "5", "lang": "de"})
    assert options.unique and options.fields == ("ip", "hits") and options.top == 5
    assert JobOptions.from_dict(options.to_dict()) == options
    assert options.engine_options().top >= 250  # every country, for the map
    with pytest.raises(JobOptionError):
        JobOptions.parse({"ip_field": "a b"})


@pytest.mark.parametrize(
    ("raw", "value"), [("1024", 1024), ("500K", 512_000), ("2M", 2 * 1024**2), ("1G", 1024**3)]
)
def test_max_upload_sizes(raw: str, value: int) -> None:
    assert Settings.from_env({"IPGEO_MAX_UPLOAD": raw}).max_upload == value


@pytest.mark.parametrize("raw", ["lots", "12X", "1", "-5M"])
def test_bad_max_upload_names_the_variable(raw: str) -> None:
    with pytest.raises(SettingsError, match="IPGEO_MAX_UPLOAD"):
        Settings.from_env({"IPGEO_MAX_UPLOAD": raw})


def test_progress_snapshot() -> None:
    state = Progress("access.log", 250, 1000, 30, 30)
    snapshot = progress_snapshot(state, 2.0)
    assert snapshot["done"] == 250 and snapshot["total"] == 1000
    assert snapshot["percent"] == 25.0
    assert snapshot["rate"] == 125 and snapshot["eta_seconds"] == 6
    assert snapshot["lines_per_second"] == 15
    unknown = progress_snapshot(Progress("-", 250, None, 30, 30), 2.0)
    assert unknown["percent"] is None and unknown["eta_seconds"] is None
    assert progress_snapshot(state, 2.0, finished=True)["percent"] == 100.0


@pytest.mark.parametrize("unique", [False, True])
def test_converted_results_equal_the_cli_formats(tmp_path: Path, unique: bool) -> None:
    service = GeoService()
    source = tmp_path / "in.txt"
    source.write_bytes(IPS + b"# comment\n\n1.1.1.1\n" + b'"quoted,ip"\n')
    options = JobOptions(unique=unique)
    engine = options.engine_options()
    run(service, [("in.txt", source.open("rb"))], engine, tmp_path / "r.ndjson")
    for fmt in ("csv", "json", "ndjson"):
        direct = tmp_path / f"direct.{fmt}"
        run(
            service,
            [("in.txt", source.open("rb"))],
            Options(**{**engine.__dict__, "output_format": fmt}),
            direct,
        )
        streamed = b"".join(stream_result(tmp_path / "r.ndjson", fmt, options.columns()))

        def without_clock(data: bytes) -> bytes:
            import re

            return re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", b"T", data)

        assert without_clock(streamed) == without_clock(direct.read_bytes()), fmt


def test_expired_job_files_are_removed(tmp_path: Path) -> None:
    jobs_dir = tmp_path / "jobs"
    live, dead, young = "a" * 32, "b" * 32, "c" * 32
    for name in (live, dead, young):
        (jobs_dir / name).mkdir(parents=True)
        (jobs_dir / name / "input").write_text("8.8.8.8\n")
    (jobs_dir / "not-a-job").mkdir()
    old = time.time() - 3600
    for name in (live, dead):
        os.utime(jobs_dir / name, (old, old))
    removed = remove_expired(tmp_path, lambda job_id: job_id == live)
    assert removed == 1
    assert sorted(path.name for path in jobs_dir.iterdir()) == sorted([live, young, "not-a-job"])


def test_worker_without_redis_says_so(tmp_path: Path) -> None:
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    result = subprocess.run(
        [sys.executable, "-m", "ipgeo", "worker"],
        env=env | {"IPGEO_DATA_DIR": str(tmp_path)},
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert b"IPGEO_REDIS_URL is unset" in result.stderr
    assert b"Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("error", "code", "message"),
    [
        (BulkError("in.log: unreadable gzip data"), "bad_input", "in.log: unreadable gzip data"),
        (
            TooLarge("rows", 10),
            "too_large",
            "the result has more than 10 rows: the limit is IPGEO_JOB_MAX_ROWS=10",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device"),
            "storage_error",
            "cannot read the upload or write the result: No space left on device",
        ),
    ],
)
def test_why_a_job_cannot_go_on(
    redisdb: redis.Redis, error: Exception, code: str, message: str
) -> None:
    """A job that cannot go on records a code and message of its own (the input's, or its
    files' for an ``OSError``) and is never run again."""
    job = Job.create(print, connection=redisdb, serializer=JSONSerializer, retry=Retry(max=2))
    job.save()
    raised = input_error(job, error)  # type: ignore[arg-type]
    assert isinstance(raised, JobInputError) and str(raised) == message
    stored = Job.fetch(job.id, connection=redisdb, serializer=JSONSerializer)
    assert stored.meta["error"] == {"code": code, "message": message}
    assert job.retries_left == 0
