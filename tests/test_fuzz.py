"""Property tests: no input produces a 5xx or a response that violates the OpenAPI document."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error, positive_data_acceptance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from ipgeo.jobs.worker import run_worker
from ipgeo.settings import Settings
from ipgeo.web import create_app


@pytest.fixture(scope="module")
def fuzz_app(make_settings: Callable[..., Settings]) -> Flask:
    # A short DNS budget: random names go to the fake resolver, which answers NXDOMAIN.
    return create_app(make_settings(IPGEO_DNS_TIMEOUT="0.2", IPGEO_BATCH_LIMIT="50"))


# A schema cannot say which strings are IPs or domain names, so a 400 for a schema-valid string
# is correct here; 5xx are checked by ``assert_no_undocumented_5xx`` (a documented 503 is fine).
EXCLUDED_CHECKS = [positive_data_acceptance, not_a_server_error]
CLIENT = {"REMOTE_ADDR": "81.2.69.142"}
OWNER_TOKEN = "fuzz-owner-token-0123456789abcdef0123456789"


def assert_no_undocumented_5xx(
    case: schemathesis.Case, status: int, seen: set[tuple[str, int]] | None = None
) -> None:
    """Only 503s, and only where the document lists them (no Redis, no database)."""
    documented = case.operation.definition.raw["responses"]
    assert status < 500 or (status == 503 and "503" in documented), (case.operation.label, status)
    if seen is not None:
        seen.add((case.operation.label, status))


def check_operations(
    schema: OpenApiSchema, max_examples: int, seen: set[tuple[str, int]] | None = None
) -> int:
    """Fuzz every operation of ``schema`` with schema-derived requests; how many there were."""
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(excluded_checks=EXCLUDED_CHECKS, environ_base=CLIENT)
            assert_no_undocumented_5xx(case, response.status_code, seen)

        check()
    return len(operations)


def test_api_conforms_to_its_openapi_document(fuzz_app: Flask) -> None:
    # Without Redis, the job operations answer their documented 503.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", fuzz_app)
    assert check_operations(schema, max_examples=40) >= 17


@pytest.fixture()
def jobs_fuzz_app(make_app: Callable[..., Flask], redis_url: str, tmp_path: Path) -> Flask:
    # A small upload limit, so that generated bodies also meet the 413.
    return make_app(IPGEO_REDIS_URL=redis_url, IPGEO_DATA_DIR=str(tmp_path), IPGEO_MAX_UPLOAD="4K")


def test_job_operations_conform_with_redis(jobs_fuzz_app: Flask) -> None:
    # No worker runs: submitted jobs stay queued, which every operation must handle.
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", jobs_fuzz_app)
    seen: set[tuple[str, int]] = set()
    assert check_operations(schema.include(tag="jobs"), max_examples=60, seen=seen) == 5
    assert {("POST /api/v1/jobs", 202), ("POST /api/v1/jobs", 400)} <= seen


def test_job_flows_conform_with_redis(jobs_fuzz_app: Flask) -> None:
    """Stateful: submit, then follow the document's links to the status, result and cancel."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", jobs_fuzz_app).include(tag="jobs")
    seen: set[tuple[str, int]] = set()

    store = jobs_fuzz_app.extensions["ipgeo.redis"].client

    class JobFlows(schema.as_state_machine()):  # type: ignore[misc]
        def setup(self) -> None:
            store.flushdb()  # each scenario starts alone, so that replays behave the same

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            # One owner for every job of the scenario, so that its jobs may be canceled.
            return {"environ_base": {**CLIENT, "HTTP_X_JOB_TOKEN": OWNER_TOKEN}}

        def validate_response(
            self, response: Any, case: schemathesis.Case, *args: Any, **kwargs: Any
        ) -> None:
            case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
            assert_no_undocumented_5xx(case, response.status_code, seen)

    JobFlows.run(
        settings=settings(
            max_examples=60,
            stateful_step_count=6,
            derandomize=True,  # the same scenarios each run, so the coverage below holds
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # Which links the generated scenarios follow depends on hypothesis' version; follow them
    # once by hand too: a queued job is read, has no result yet, and is canceled.
    store.flushdb()
    client = jobs_fuzz_app.test_client()
    owner = {**CLIENT, "HTTP_X_JOB_TOKEN": OWNER_TOKEN}
    submitted = client.post("/api/v1/jobs", data=b"8.8.8.8\n", environ_base=owner)
    assert submitted.status_code == 202
    schema["/api/v1/jobs"]["POST"].validate_response(submitted)
    job = f"/api/v1/jobs/{submitted.json['id']}"
    for method, path, response, status in (
        ("GET", "/api/v1/jobs/{job_id}", client.get(job, environ_base=owner), 200),
        ("GET", "/api/v1/jobs/{job_id}/result", client.get(f"{job}/result"), 409),
        ("DELETE", "/api/v1/jobs/{job_id}", client.delete(job, environ_base=owner), 200),
    ):
        assert response.status_code == status, (method, path, response.data[:300])
        schema[path][method].validate_response(response)


def test_ended_jobs_conform_with_a_real_worker(jobs_fuzz_app: Flask) -> None:
    """Finished, failed and canceled jobs, their results and their deletion, as documented."""
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", jobs_fuzz_app)
    client = jobs_fuzz_app.test_client()
    submit = schema["/api/v1/jobs"]["POST"]
    good = client.post("/api/v1/jobs?mode=unique", data=b"8.8.8.8\n81.2.69.142\n8.8.8.8\n")
    bad = client.post("/api/v1/jobs?input_format=jsonl", data=b'{"no": "ip here"}\n')
    queued = client.post(
        "/api/v1/jobs",
        data={"file": (io.BytesIO(b"1.1.1.1\n"), "ips.txt")},
        content_type="multipart/form-data",
    )
    for response in (good, bad, queued):
        assert response.status_code == 202, response.json
        submit.validate_response(response)
    canceled = client.delete(f"/api/v1/jobs/{queued.json['id']}")
    assert canceled.status_code == 200 and canceled.json["status"] == "canceled"
    schema["/api/v1/jobs/{job_id}"]["DELETE"].validate_response(canceled)

    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # a real forking RQ worker, until the queue is empty
        run_worker(
            jobs_fuzz_app.extensions["ipgeo.settings"],
            jobs_fuzz_app.extensions["ipgeo.geo"],
            burst=True,
        )
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    status = schema["/api/v1/jobs/{job_id}"]["GET"]
    result = schema["/api/v1/jobs/{job_id}/result"]["GET"]
    finished = client.get(f"/api/v1/jobs/{good.json['id']}")
    assert finished.json["status"] == "finished", finished.json
    assert finished.json["summary"]["distinct_ips"] == 2
    assert set(finished.json["links"]["result"]) == {"csv", "ndjson", "json"}
    status.validate_response(finished)
    failed = client.get(f"/api/v1/jobs/{bad.json['id']}")
    assert failed.json["status"] == "failed" and failed.json["error"]["code"] == "bad_input"
    status.validate_response(failed)
    for fmt, mimetype in [
        ("csv", "text/csv"),
        ("ndjson", "application/x-ndjson"),
        ("json", "application/json"),
    ]:
        download = client.get(f"/api/v1/jobs/{good.json['id']}/result?format={fmt}")
        assert download.status_code == 200 and download.mimetype == mimetype
        result.validate_response(download)
    not_ready = client.get(f"/api/v1/jobs/{bad.json['id']}/result")
    assert not_ready.status_code == 409
    result.validate_response(not_ready)
    listed = client.get("/api/v1/jobs", environ_base=CLIENT)
    schema["/api/v1/jobs"]["GET"].validate_response(listed)
    deleted = client.delete(f"/api/v1/jobs/{good.json['id']}")
    assert deleted.status_code == 204
    schema["/api/v1/jobs/{job_id}"]["DELETE"].validate_response(deleted)
    assert client.get(f"/api/v1/jobs/{good.json['id']}").status_code == 404


ZONE_IDS = st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=12)
SCOPED_IPV6 = st.builds(
    lambda ip, zone: f"{ip}%{zone}", st.ip_addresses(v=6).map(str), ZONE_IDS
)  # fe80::1%eth0: never a location
IPV4_MAPPED = st.ip_addresses(v=4).map(lambda ip: f"::ffff:{ip}")
WITH_CONTROLS = st.builds(
    lambda ip, control, at: ip[:at] + control + ip[at:],
    st.ip_addresses().map(str),
    st.characters(categories=["Cc"]),
    st.integers(0, 40),
)
QUERIES = st.one_of(
    SCOPED_IPV6,
    IPV4_MAPPED,
    WITH_CONTROLS,
    st.text(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=80),
    st.from_regex(r"[a-z0-9-]{1,70}(\.[a-z0-9-]{1,70}){0,5}", fullmatch=True),
    st.ip_addresses().map(str),
    st.just("a" * 10_000),
    st.just("x" * 64 + ".test"),
    st.just("ex\x00ample.test"),
    st.just("..."),
    st.just("1.2.3.4.5"),
)


@given(query=QUERIES)
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
def test_lookup_never_fails_with_5xx(fuzz_app: Flask, query: str) -> None:
    client = fuzz_app.test_client()
    response = client.get("/api/v1/lookup/" + quote(query, safe=""))
    assert response.status_code < 500, (query, response.data[:300])
    body = response.get_json()
    if response.status_code == 200:
        assert "ip" in body
    else:
        assert set(body["error"]) == {"code", "message"}


@given(queries=st.lists(QUERIES, max_size=8), fields=st.sampled_from(["", "ip,city", "bogus"]))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_batch_never_fails_with_5xx(fuzz_app: Flask, queries: list[str], fields: str) -> None:
    client = fuzz_app.test_client()
    response = client.post(f"/api/v1/batch?fields={fields}", json=queries)
    assert response.status_code < 500
    if response.status_code == 200:
        assert len(response.get_json()) == len(queries)


@given(
    params=st.dictionaries(
        st.sampled_from(["ip", "lang", "fields", "format"]), st.text(max_size=40), max_size=4
    ),
    path=st.sampled_from(["/json", "/country", "/city", "/coordinates", "/asn", "/ip", "/"]),
)
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_query_parameters_never_fail_with_5xx(
    fuzz_app: Flask, params: dict[str, str], path: str
) -> None:
    response = fuzz_app.test_client().get(path, query_string=params)
    assert response.status_code < 500, (path, params, response.data[:300])


@given(
    body=st.one_of(
        st.lists(QUERIES, max_size=8).map(lambda queries: json.dumps(queries).encode()),
        st.binary(max_size=2000),
    ),
    piece=st.integers(1, 512),
)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_chunked_batch_bodies_never_fail_with_5xx(fuzz_app: Flask, body: bytes, piece: int) -> None:
    """A body sent chunked (no Content-Length), as a WSGI server hands it on."""
    environ = {
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input_terminated": True,
        "wsgi.input": io.BufferedReader(io.BytesIO(body), buffer_size=piece),  # type: ignore[arg-type]
    }
    response = fuzz_app.test_client().post("/api/v1/batch", environ_overrides=environ)
    assert response.status_code < 500, (body[:200], response.data[:300])


@given(forwarded=st.lists(st.one_of(SCOPED_IPV6, IPV4_MAPPED, WITH_CONTROLS), max_size=3))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_forwarded_addresses_never_fail_with_5xx(
    make_settings: Callable[..., Settings], forwarded: list[str]
) -> None:
    app = _proxied_app(make_settings)
    header = ", ".join(item.replace("\r", "").replace("\n", "") for item in forwarded)
    for path in ("/json", "/ip", "/api/v1/lookup/8.8.8.8"):
        response = app.test_client().get(
            path, headers={"X-Forwarded-For": header}, environ_base={"REMOTE_ADDR": "127.0.0.1"}
        )
        assert response.status_code < 500, (path, header, response.data[:300])


_PROXIED: dict[str, Flask] = {}


def _proxied_app(make_settings: Callable[..., Settings]) -> Flask:
    if "app" not in _PROXIED:
        _PROXIED["app"] = create_app(make_settings(IPGEO_TRUSTED_PROXIES="127.0.0.1"))
    return _PROXIED["app"]
