"""Request ids, structured request logs, ``/metrics``, ``/readyz`` and the build header."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from flask import Flask, abort
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from ipgeo.dbupdate.install import install
from ipgeo.geo import GeoService
from ipgeo.logs import setup_logging
from ipgeo.settings import Settings
from ipgeo.web import create_app
from tests.updateserver import write_versioned_mmdb

BASE = 1_700_000_000
LOOKUP = "/api/v1/lookup/<path:query>"


@pytest.fixture()
def city_file(tmp_path: Path) -> Path:
    return write_versioned_mmdb(tmp_path / "city.mmdb", "Version 0", BASE)


@pytest.fixture()
def make_city_app(make_settings: Callable[..., Settings], city_file: Path) -> Callable[..., Flask]:
    def make(**env: str) -> Flask:
        settings = make_settings(IPGEO_CITY_DB=str(city_file), **env)
        return create_app(settings, GeoService.from_settings(settings))

    return make


@pytest.fixture()
def client(make_city_app: Callable[..., Flask]) -> FlaskClient:
    return make_city_app(IPGEO_DB_RELOAD_INTERVAL="0.001").test_client()


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_parse_and_counters_move(client: FlaskClient) -> None:
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/lookup/81.2.69.142").status_code == 200
    assert client.get("/api/v1/lookup/10.0.0.1").status_code == 404
    assert client.get("/api/v1/lookup/1.1.1.1").status_code == 404
    assert client.get("/api/v1/lookup/not..valid").status_code == 400
    after = scrape(client)
    requests = "ipgeo_http_requests_total"
    ok = {"endpoint": LOOKUP, "method": "GET", "status": "200"}
    assert value(after, requests, **ok) - value(before, requests, **ok) == 3
    missing = {"endpoint": LOOKUP, "method": "GET", "status": "404"}
    assert value(after, requests, **missing) - value(before, requests, **missing) == 2
    lookups = "ipgeo_lookups_total"
    for result, count in (("found", 3), ("reserved_address", 1), ("not_found", 1)):
        delta = value(after, lookups, result=result) - value(before, lookups, result=result)
        assert delta == count, result
    histogram = "ipgeo_http_request_duration_seconds_count"
    assert value(after, histogram, endpoint=LOOKUP) - value(before, histogram, endpoint=LOOKUP) == 6
    metrics_ok = {"endpoint": "/metrics", "method": "GET", "status": "200"}
    assert value(after, requests, **metrics_ok) >= 1
    age = value(after, "ipgeo_database_age_days", role="city", database_type="GeoLite2-City")
    assert age > 365
    assert value(after, "ipgeo_database_generation") == 1


def test_metric_families_for_jobs_and_rate_limits(client: FlaskClient) -> None:
    text = client.get("/metrics").get_data(as_text=True)
    names = {family.name for family in text_string_to_metric_families(text)}
    for name in (
        "ipgeo_http_requests",
        "ipgeo_http_request_duration_seconds",
        "ipgeo_lookups",
        "ipgeo_rate_limited",
        "ipgeo_jobs",
        "ipgeo_job_duration_seconds",
        "ipgeo_database_age_days",
        "ipgeo_database_build_timestamp_seconds",
    ):
        assert name in names


def test_429_responses_are_counted(make_city_app: Callable[..., Flask]) -> None:
    app = make_city_app()
    app.add_url_rule("/limited", "limited", lambda: abort(429))
    client = app.test_client()
    before = value(scrape(client), "ipgeo_rate_limited_total", endpoint="/limited")
    assert client.get("/limited").status_code == 429
    assert client.get("/limited").status_code == 429
    after = value(scrape(client), "ipgeo_rate_limited_total", endpoint="/limited")
    assert after - before == 2


def test_metrics_only_for_the_metrics_network(make_city_app: Callable[..., Flask]) -> None:
    client = make_city_app().test_client()
    outside = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"})
    assert outside.status_code == 403
    assert outside.json == {
        "error": {"code": "forbidden", "message": "metrics are only served to the metrics network"}
    }
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "::1"}).status_code == 200
    allowed = make_city_app(IPGEO_METRICS_ALLOWED="203.0.113.0/24").test_client()
    assert allowed.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code == 200
    assert allowed.get("/metrics").status_code == 403  # loopback is no longer listed
    nobody = make_city_app(IPGEO_METRICS_ALLOWED="").test_client()
    assert nobody.get("/metrics").status_code == 403
    # Behind a trusted proxy the forwarded client counts, not the proxy's loopback address.
    proxied = make_city_app(IPGEO_TRUSTED_PROXIES="127.0.0.1").test_client()
    forwarded = proxied.get("/metrics", headers={"X-Forwarded-For": "198.51.100.7"})
    assert forwarded.status_code == 403


def test_request_id_is_taken_or_generated(client: FlaskClient) -> None:
    given = client.get("/healthz", headers={"X-Request-ID": "0f1e2d3c4b5a69788796a5b4c3d2e1f0"})
    assert given.headers["X-Request-ID"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    for bad in ("has spaces", "x" * 300, "<script>", "a\tb"):
        response = client.get("/healthz", headers={"X-Request-ID": bad})
        generated = response.headers["X-Request-ID"]
        assert generated != bad
        assert len(generated) == 32 and int(generated, 16) >= 0
    first = client.get("/healthz").headers["X-Request-ID"]
    assert first != client.get("/healthz").headers["X-Request-ID"]
    assert client.get("/no/such/page").headers.get("X-Request-ID")


@pytest.fixture()
def log_stream() -> Iterator[Callable[[str], io.StringIO]]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)

    def use(fmt: str) -> io.StringIO:
        stream = io.StringIO()
        setup_logging(fmt, stream=stream)
        return stream

    yield use
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def test_json_request_log(client: FlaskClient, log_stream: Callable[[str], io.StringIO]) -> None:
    stream = log_stream("json")
    client.get(
        "/api/v1/lookup/81.2.69.142?fields=city",
        headers={"X-Request-ID": "abc-123", "User-Agent": "tester/1.0"},
    )
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    [entry] = [line for line in lines if line["logger"] == "ipgeo.access"]
    assert entry["method"] == "GET"
    assert entry["path"] == "/api/v1/lookup/81.2.69.142"
    assert entry["query"] == "fields=city"
    assert entry["status"] == 200
    assert entry["duration_ms"] >= 0
    assert entry["client_ip"] == "127.0.0.1"
    assert entry["request_id"] == "abc-123"
    assert entry["user_agent"] == "tester/1.0"
    assert entry["level"] == "info"
    assert entry["time"].endswith("+00:00")


def test_other_logs_carry_the_request_id(
    make_city_app: Callable[..., Flask], log_stream: Callable[[str], io.StringIO]
) -> None:
    app = make_city_app()

    def boom() -> str:
        raise RuntimeError("kaputt")

    app.add_url_rule("/boom", "boom", boom)
    stream = log_stream("json")
    response = app.test_client().get("/boom", headers={"X-Request-ID": "req-42"})
    assert response.status_code == 500
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    [error] = [line for line in lines if line["level"] == "error"]
    assert error["request_id"] == "req-42"
    assert "RuntimeError: kaputt" in error["exception"]


def test_text_request_log(client: FlaskClient, log_stream: Callable[[str], io.StringIO]) -> None:
    stream = log_stream("text")
    client.get("/ip", headers={"X-Request-ID": "text-1", "User-Agent": "curl/8.5"})
    [line] = [line for line in stream.getvalue().splitlines() if "ipgeo.access" in line]
    assert '127.0.0.1 "GET /ip" 200' in line
    assert "id=text-1" in line and '"curl/8.5"' in line
    assert not line.lstrip().startswith("{")


def test_build_header_and_meta_follow_reloads(client: FlaskClient, city_file: Path) -> None:
    first = client.get("/api/v1/lookup/81.2.69.142")
    assert first.headers["X-Database-Build"] == "2023-11-14T22:13:20Z"
    assert client.get("/api/v1/meta").json["databases"][0]["build_date"] == "2023-11-14T22:13:20Z"
    install(write_versioned_mmdb(city_file.with_name(".v1"), "Version 1", BASE + 86400), city_file)
    client.application.extensions["ipgeo.geo"].request_reload()
    second = client.get("/api/v1/lookup/81.2.69.142")
    assert second.json["city"] == "Version 1"
    assert second.headers["X-Database-Build"] == "2023-11-15T22:13:20Z"
    assert client.get("/api/v1/meta").json["databases"][0]["build_date"] == "2023-11-15T22:13:20Z"
    ready = client.get("/readyz").json["checks"]["database"]
    assert ready["generation"] == 2


def test_readyz_reports_each_dependency(
    make_city_app: Callable[..., Flask], city_file: Path, testdata: Path
) -> None:
    client = make_city_app(
        IPGEO_DB_RELOAD_INTERVAL="0.001", IPGEO_DB_MAX_AGE_DAYS="0"
    ).test_client()
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json
    assert body["status"] == "ok"
    database = body["checks"]["database"]
    assert database["status"] == "ok"
    assert database["type"] == "GeoLite2-City"
    assert database["build_date"] == "2023-11-14T22:13:20Z"
    assert database["age_days"] > 365
    assert body["checks"]["asn_database"] == {"status": "ok", "configured": False}
    # A broken replacement: lookups go on with the old file, readiness says degraded.
    broken = city_file.with_name(".broken")
    broken.write_bytes(b"not a database")
    broken.replace(city_file)
    client.application.extensions["ipgeo.geo"].request_reload()
    degraded = client.get("/readyz")
    assert degraded.status_code == 200
    assert degraded.json["status"] == "degraded"
    assert "old database stays in service" in degraded.json["checks"]["database"]["reload_error"]
    assert client.get("/api/v1/lookup/81.2.69.142").status_code == 200


def test_readyz_stale_database_and_asn(make_city_app: Callable[..., Flask], testdata: Path) -> None:
    app = make_city_app(
        IPGEO_DB_MAX_AGE_DAYS="30", IPGEO_ASN_DB=str(testdata / "GeoLite2-ASN-Test.mmdb")
    )
    body = app.test_client().get("/readyz").json
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "degraded"
    assert "older than 30 days" in body["checks"]["database"]["problem"]
    assert body["checks"]["asn_database"]["status"] == "ok"
    assert body["checks"]["asn_database"]["type"] == "GeoLite2-ASN"


def test_readyz_is_503_only_when_lookups_cannot_be_served(
    make_city_app: Callable[..., Flask],
) -> None:
    app = make_city_app()
    client = app.test_client()
    app.extensions["ipgeo.geo"].city.close()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json["status"] == "down"
    assert ready.json["checks"]["database"]["status"] == "down"
    assert client.get("/api/v1/lookup/81.2.69.142").status_code == 503


def test_readyz_matches_its_openapi_schema(
    make_city_app: Callable[..., Flask], testdata: Path
) -> None:
    import jsonschema_rs  # installed with schemathesis

    client = make_city_app(IPGEO_ASN_DB=str(testdata / "GeoLite2-ASN-Test.mmdb")).test_client()
    document = client.get("/api/openapi.json").json
    schema = document["components"]["schemas"]["Readiness"]
    jsonschema_rs.validate(schema, client.get("/readyz").json)
    with pytest.raises(jsonschema_rs.ValidationError):
        jsonschema_rs.validate(schema, {"status": "fine", "checks": {}})
    lookup_ok = document["paths"]["/api/v1/lookup/{query}"]["get"]["responses"]["200"]
    assert set(lookup_ok["headers"]) == {"X-Database-Build", "X-Request-ID"}
    assert "/metrics" in document["paths"]


def test_refused_requests_are_still_observed(
    make_city_app: Callable[..., Flask], log_stream: Callable[[str], io.StringIO]
) -> None:
    """The allowlist answers before any handler, after the request id and before the metrics."""
    client = make_city_app(IPGEO_ALLOWED="10.0.0.0/8").test_client()
    before = value(
        scrape(make_city_app().test_client()),
        "ipgeo_http_requests_total",
        endpoint="/ip",
        method="GET",
        status="403",
    )
    stream = log_stream("json")
    response = client.get("/ip", headers={"X-Request-ID": "refused-1"})
    assert response.status_code == 403
    assert response.headers["X-Request-ID"] == "refused-1"
    assert response.headers["X-Database-Build"] == "2023-11-14T22:13:20Z"
    after = value(
        scrape(make_city_app().test_client()),
        "ipgeo_http_requests_total",
        endpoint="/ip",
        method="GET",
        status="403",
    )
    assert after - before == 1
    [entry] = [
        orjson.loads(line)
        for line in stream.getvalue().splitlines()
        if '"ipgeo.access"' in line and "refused-1" in line
    ]
    assert (entry["status"], entry["endpoint"], entry["path"]) == (403, "/ip", "/ip")
