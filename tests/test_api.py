from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

import orjson
from flask import Flask
from flask.testing import FlaskClient

from ipgeo.geo import FIELDS
from ipgeo.web import create_app

PUBLIC = {"REMOTE_ADDR": "81.2.69.142"}


def test_lookup_has_every_field(client: FlaskClient) -> None:
    response = client.get("/api/v1/lookup/8.8.8.8")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert list(body) == list(FIELDS)
    assert body["country_iso"] == "US"
    assert body["version"] == 4
    assert body["time_zone_source"] == "database"


def test_ipv6_and_mapped(client: FlaskClient) -> None:
    body = client.get("/api/v1/lookup/2a00:1450:4001:80b::200e").get_json()
    assert (body["version"], body["country_iso"]) == (6, "DE")
    mapped = client.get("/api/v1/lookup/::ffff:81.2.69.142").get_json()
    assert (mapped["ip"], mapped["version"], mapped["query"]) == (
        "81.2.69.142",
        4,
        "::ffff:81.2.69.142",
    )


def test_fields_lang_and_formats(client: FlaskClient) -> None:
    body = client.get("/api/v1/lookup/81.2.69.142?fields=country,city&lang=de").get_json()
    assert body == {"country": "Vereinigtes Königreich", "city": "Gamlingay"}
    xml = client.get("/api/v1/lookup/8.8.8.8?format=xml")
    assert xml.mimetype == "application/xml"
    assert ET.fromstring(xml.data).findtext("country_iso") == "US"
    rows = list(csv.DictReader(io.StringIO(client.get("/api/v1/lookup/8.8.8.8?format=csv").text)))
    assert rows[0]["country_iso"] == "US" and rows[0]["hostname"] == ""
    text = client.get("/api/v1/lookup/8.8.8.8?format=text").text
    assert "country_iso" in text and "US" in text
    accept = client.get("/api/v1/lookup/8.8.8.8", headers={"Accept": "text/csv"})
    assert accept.mimetype == "text/csv"
    browser = client.get(
        "/api/v1/lookup/8.8.8.8",
        headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
    )
    assert browser.mimetype == "application/json"


def test_errors_have_one_shape(client: FlaskClient) -> None:
    cases = {
        "/api/v1/lookup/not-an-ip!!": (400, "invalid_query"),
        "/api/v1/lookup/999.1.1.1": (400, "invalid_query"),
        "/api/v1/lookup/10.0.0.1": (404, "reserved_address"),
        "/api/v1/lookup/nxdomain.test": (404, "unresolvable"),
        "/api/v1/lookup/8.8.8.8?format=yaml": (400, "invalid_format"),
        "/api/v1/lookup/8.8.8.8?fields=nope": (400, "invalid_fields"),
        "/api/v1/lookup/8.8.8.8?lang=<script>": (400, "invalid_lang"),
        "/no/such/page": (404, "not_found"),
    }
    for url, (status, code) in cases.items():
        response = client.get(url)
        assert response.status_code == status, url
        assert response.get_json()["error"]["code"] == code, url
        assert response.get_json()["error"]["message"], url
    assert client.put("/api/v1/lookup/8.8.8.8").status_code == 405


def test_domain_lookup_returns_every_address(client: FlaskClient) -> None:
    body = client.get("/api/v1/lookup/example.test").get_json()
    assert body["ip"] == "8.8.8.8"
    assert body["hostname"] == "example.test"
    assert body["addresses"] == ["8.8.8.8", "2001:4860:4860::8888"]
    idn = client.get("/api/v1/lookup/bücher.test").get_json()
    assert (idn["ip"], idn["hostname"]) == ("81.2.69.142", "xn--bcher-kva.test")
    v6 = client.get("/api/v1/lookup/v6only.test").get_json()
    assert v6["version"] == 6
    private = client.get("/api/v1/lookup/private.test")
    assert private.status_code == 404
    assert private.get_json()["error"]["code"] == "reserved_address"
    empty = client.get("/api/v1/lookup/empty.test")
    assert empty.get_json()["error"]["code"] == "unresolvable"


def test_dns_timeout_is_bounded(client: FlaskClient) -> None:
    response = client.get("/api/v1/lookup/slow.test")
    assert response.status_code == 404
    assert "could not be resolved" in response.get_json()["error"]["message"]


def test_batch(client: FlaskClient) -> None:
    queries = ["8.8.8.8", "bad!", "10.0.0.1", "example.test", "2001:218::1"]
    response = client.post("/api/v1/batch?fields=ip,country_iso", json=queries)
    assert response.status_code == 200
    items = response.get_json()
    assert len(items) == len(queries)
    assert items[0] == {"ip": "8.8.8.8", "country_iso": "US"}
    assert items[1]["error"]["code"] == "invalid_query" and items[1]["query"] == "bad!"
    assert items[2]["error"]["code"] == "reserved_address"
    assert items[3]["ip"] == "8.8.8.8"


def test_batch_limits_and_bad_bodies(app: Flask, client: FlaskClient) -> None:
    limit = app.extensions["ipgeo.settings"].batch_limit
    too_many = client.post("/api/v1/batch", data=orjson.dumps(["8.8.8.8"] * (limit + 1)))
    assert too_many.status_code == 413
    assert too_many.get_json()["error"]["code"] == "too_many_queries"
    for body in [b"", b"{", b'{"a": 1}', b"[1, 2]", b'"8.8.8.8"', b"\xff\xfe"]:
        response = client.post("/api/v1/batch", data=body)
        assert response.status_code == 400, body
        assert "error" in response.get_json()
    assert client.post("/api/v1/batch", json=[]).get_json() == []


def test_own_ip_endpoints(client: FlaskClient) -> None:
    assert client.get("/ip", environ_base=PUBLIC).text == "81.2.69.142\n"
    assert client.get("/json", environ_base=PUBLIC).get_json()["city"] == "Gamlingay"
    loopback = client.get("/json", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_json()
    assert loopback["ip"] == "127.0.0.1" and loopback["country"] is None
    assert list(loopback) == list(FIELDS)
    curl = client.get("/", headers={"User-Agent": "curl/8.5.0"}, environ_base=PUBLIC)
    assert curl.text == "81.2.69.142\n"
    for agent in ["Wget/1.21", "HTTPie/3.2.2"]:
        assert client.get("/", headers={"User-Agent": agent}).text == "127.0.0.1\n"
    plain = client.get("/", headers={"Accept": "text/plain"})
    assert plain.text == "127.0.0.1\n"
    page = client.get("/", headers={"User-Agent": "Mozilla/5.0", "Accept": "text/html"})
    assert page.mimetype == "text/html" and "127.0.0.1" in page.text


def test_spoofed_forwarded_for_is_ignored_without_trusted_proxies(client: FlaskClient) -> None:
    response = client.get("/ip", headers={"X-Forwarded-For": "1.2.3.4"})
    assert response.text == "127.0.0.1\n"


def test_trusted_proxy_header(make_settings: object) -> None:

    app = create_app(make_settings(IPGEO_TRUSTED_PROXIES="127.0.0.1"))  # type: ignore[operator]
    client = app.test_client()
    assert client.get("/ip", headers={"X-Forwarded-For": "6.6.6.6, 1.2.3.4"}).text == "1.2.3.4\n"


def test_plain_field_endpoints(client: FlaskClient) -> None:
    expected = {
        "/country?ip=81.2.69.142": "United Kingdom\n",
        "/country-iso?ip=81.2.69.142": "GB\n",
        "/city?ip=81.2.69.142": "Gamlingay\n",
        "/coordinates?ip=81.2.69.142": "52.1398,-0.2399\n",
        "/timezone?ip=81.2.69.142": "Europe/London\n",
    }
    for url, text in expected.items():
        response = client.get(url)
        assert (response.status_code, response.text, response.mimetype) == (200, text, "text/plain")
    assert client.get("/country", environ_base=PUBLIC).text == "United Kingdom\n"
    assert client.get("/asn?ip=8.8.8.8").status_code == 404  # no ASN database configured
    assert client.get("/city?ip=8.8.8.8").status_code == 404  # country-level record only
    assert client.get("/country?ip=nope").status_code == 400
    assert client.get("/country").status_code == 404  # 127.0.0.1 has no location


def test_asn_with_asn_database(test_app: Flask) -> None:
    client = test_app.test_client()
    assert client.get("/asn?ip=89.160.20.128").text == "AS29518\n"
    body = client.get("/api/v1/lookup/89.160.20.128").get_json()
    assert (body["asn"], body["asn_org"]) == (29518, "Bredband2 AB")


def test_health_ready_meta(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz").get_json()
    # The bundled database is from 2019: older than IPGEO_DB_MAX_AGE_DAYS' default of 45.
    assert ready["status"] == "degraded"
    assert ready["checks"]["database"]["status"] == "degraded"
    assert ready["checks"]["database"]["problem"] == "the database is older than 45 days"
    meta = client.get("/api/v1/meta").get_json()
    assert meta["databases"][0]["database_type"] == "GeoLite2-City"
    assert meta["databases"][0]["build_date"].startswith("2019-12")
    assert "CC BY-SA 4.0" in meta["attribution"]


def test_cors(client: FlaskClient) -> None:
    response = client.get("/api/v1/lookup/8.8.8.8", headers={"Origin": "https://x.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    preflight = client.options(
        "/api/v1/lookup/8.8.8.8",
        headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert "GET" in preflight.headers["Access-Control-Allow-Methods"]


def test_cors_restricted(make_settings: object) -> None:

    app = create_app(make_settings(IPGEO_CORS_ORIGINS="https://ok.example"))  # type: ignore[operator]
    client = app.test_client()
    ok = client.get("/json", headers={"Origin": "https://ok.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://ok.example"
    other = client.get("/json", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_openapi_and_docs(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/lookup/{query}" in spec["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/api/v1/batch" in docs.text
    assert "GeoLite2" in docs.text


def test_openapi_documents_the_job_endpoints(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").get_json()
    operations = {
        (method.upper(), path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if "jobs" in operation["tags"]
    }
    assert set(operations) == {
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs"),
        ("GET", "/api/v1/jobs/{job_id}"),
        ("GET", "/api/v1/jobs/{job_id}/result"),
        ("DELETE", "/api/v1/jobs/{job_id}"),
    }
    assert all("503" in operation["responses"] for operation in operations.values())
    assert "429" not in operations[("GET", "/api/v1/jobs/{job_id}")]["responses"]  # polls
    body = operations[("POST", "/api/v1/jobs")]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "text/plain", "application/octet-stream"}
    assert "file" in body["multipart/form-data"]["schema"]["properties"]
    result = operations[("GET", "/api/v1/jobs/{job_id}/result")]["responses"]["200"]["content"]
    assert set(result) == {"text/csv", "application/x-ndjson", "application/json"}
    docs = client.get("/docs").text
    assert "curl -F file=@access.log http://localhost/api/v1/jobs" in docs
    assert 'href="/api/v1/jobs/{job_id}' not in docs  # no "try it" with a made-up id
    assert "<code>multipart/form-data</code>" in docs
