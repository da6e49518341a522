"""The lean lookup path answers exactly as the Flask route does: status, body, headers, logs."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from flask import Flask

from ipgeo.metrics import metrics
from ipgeo.settings import Settings
from ipgeo.web import create_app
from ipgeo.web.lean import LeanLookups

# The parts of a log line that differ between two requests: duration and generated id.
_VARYING = re.compile(r" \d+\.\d ms id=[0-9a-f]{32} ")
CASES: list[tuple[str, dict[str, str]]] = [
    ("/api/v1/lookup/81.2.69.142", {}),
    ("/api/v1/lookup/2a02:c7c::1", {"Accept": "*/*", "User-Agent": "curl/8.0"}),
    ("/api/v1/lookup/::ffff:81.2.69.142", {"Accept": "application/json"}),
    ("/api/v1/lookup/10.0.0.1", {"X-Request-ID": "abc123"}),  # reserved: 404
    ("/api/v1/lookup/0.1.2.3", {}),
    ("/api/v1/lookup/192.0.2.1", {"X-Forwarded-For": "1.2.3.4", "X-Request-ID": "bad id!"}),
    ("/api/v1/lookup/81.2.69.142", {"Origin": "https://elsewhere.example"}),
    ("/api/v1/lookup/%20%2081.2.69.142", {}),
]


def _answer(app: Flask, path: str, headers: dict[str, str]) -> dict[str, Any]:
    response = app.test_client().get(path, headers=headers, environ_base={"REMOTE_ADDR": "9.9.9.9"})
    body = orjson.loads(response.data)
    if isinstance(body, dict):
        body.pop("local_time", None)
    sent = dict(response.headers)
    rid = sent.pop("X-Request-ID")
    if "X-Request-ID" in headers and headers["X-Request-ID"] == "abc123":
        assert rid == "abc123"
    else:
        assert len(rid) == 32
    return {"status": response.status, "body": body, "headers": sent}


def _apps(make_settings: Callable[..., Settings], **env: str) -> tuple[Flask, Flask]:
    lean = create_app(make_settings(IPGEO_LEAN_PATH="true", **env))
    flask = create_app(make_settings(IPGEO_LEAN_PATH="false", **env))
    assert isinstance(lean.wsgi_app, LeanLookups)
    assert not isinstance(flask.wsgi_app, LeanLookups)
    return lean, flask


@pytest.mark.parametrize(("path", "headers"), CASES)
def test_same_answers_and_headers(
    make_settings: Callable[..., Settings], path: str, headers: dict[str, str]
) -> None:
    lean, flask = _apps(make_settings)
    assert _answer(lean, path, headers) == _answer(flask, path, headers)


# (path, headers, REMOTE_ADDR): the caller's own endpoints
OWN_CASES: list[tuple[str, dict[str, str], str]] = [
    (path, headers, peer)
    for path in ("/json", "/ip")
    for headers, peer in [
        ({}, "81.2.69.142"),
        ({}, "127.0.0.1"),  # reserved: /json shows only the IP
        ({"Accept": "*/*", "User-Agent": "curl/8.0"}, "2a02:c7c::1"),
        ({"Accept": "application/json"}, "::ffff:81.2.69.142"),
        ({"X-Forwarded-For": "8.8.8.8", "X-Request-ID": "abc123"}, "127.0.0.1"),
        ({"X-Forwarded-For": "6.6.6.6, 8.8.8.8", "X-Real-IP": "9.9.9.9"}, "10.0.0.7"),
        ({"X-Real-IP": "8.8.4.4"}, "127.0.0.1"),
        ({"Origin": "https://elsewhere.example"}, "8.8.8.8"),
        ({"Accept": "text/html"}, "8.8.8.8"),  # Flask's (JSON for /json, text for /ip)
    ]
]


def _answer_from(app: Flask, path: str, headers: dict[str, str], peer: str) -> dict[str, Any]:
    response = app.test_client().get(path, headers=headers, environ_base={"REMOTE_ADDR": peer})
    sent = dict(response.headers)
    rid = sent.pop("X-Request-ID")
    assert rid == "abc123" if headers.get("X-Request-ID") == "abc123" else len(rid) == 32
    body: Any = response.data
    if response.mimetype == "application/json":
        body = orjson.loads(response.data)
        if isinstance(body, dict):
            body.pop("local_time", None)
    return {"status": response.status, "body": body, "headers": sent}


@pytest.mark.parametrize(("path", "headers", "peer"), OWN_CASES)
@pytest.mark.parametrize("trusted", ["", "127.0.0.1;10.0.0.0/8"])
def test_own_endpoints_same_answers_and_headers(
    make_settings: Callable[..., Settings],
    path: str,
    headers: dict[str, str],
    peer: str,
    trusted: str,
) -> None:
    lean, flask = _apps(make_settings, IPGEO_TRUSTED_PROXIES=trusted)
    assert _answer_from(lean, path, headers, peer) == _answer_from(flask, path, headers, peer)


def test_lean_path_really_answers(make_settings: Callable[..., Settings]) -> None:
    lean, _ = _apps(make_settings)
    middleware = lean.wsgi_app
    assert isinstance(middleware, LeanLookups)
    passed: list[str] = []
    flask_wsgi = middleware.flask_wsgi

    def counting(environ: dict[str, Any], start_response: Any) -> Any:
        passed.append(environ["PATH_INFO"])
        return flask_wsgi(environ, start_response)

    middleware.flask_wsgi = counting  # type: ignore[assignment]
    client = lean.test_client()
    assert client.get("/api/v1/lookup/81.2.69.142").status_code == 200
    assert client.get("/api/v1/lookup/10.0.0.1").status_code == 404
    assert client.get("/json", environ_base={"REMOTE_ADDR": "81.2.69.142"}).status_code == 200
    assert client.get("/json").status_code == 200
    assert client.get("/ip").text == "127.0.0.1\n"
    assert passed == []
    client.get("/api/v1/lookup/81.2.69.142?fields=ip")
    client.get("/api/v1/lookup/example.com")
    client.get("/api/v1/lookup/81.2.69.142", headers={"Accept": "text/csv"})
    client.head("/api/v1/lookup/81.2.69.142")
    client.get("/json?fields=ip")
    client.get("/json", headers={"Accept": "text/csv"})
    client.head("/ip")
    client.get("/ip", environ_base={"REMOTE_ADDR": "not-an-address"})  # a 400 from Flask
    assert len(passed) == 8


def test_same_access_log_and_metrics(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    lean, flask = _apps(make_settings, IPGEO_TRUSTED_PROXIES="127.0.0.1")
    requests = metrics().requests
    records: dict[str, list[dict[str, Any]]] = {}
    lookup_counts: dict[str, list[float]] = {}
    lookup_counters = [
        metrics().lookups.labels(result) for result in ("found", "reserved_address", "not_found")
    ] + [metrics().lookup_cache.labels(result) for result in ("hit", "miss")]
    for name, app in (("lean", lean), ("flask", flask)):
        counted = [counter._value.get() for counter in lookup_counters]
        ok = requests.labels("/api/v1/lookup/<path:query>", "GET", "200")
        missing = requests.labels("/api/v1/lookup/<path:query>", "GET", "404")
        before = (ok._value.get(), missing._value.get())
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ipgeo.access"):
            client = app.test_client()
            client.get(
                "/api/v1/lookup/81.2.69.142",
                headers={"X-Forwarded-For": "5.6.7.8", "User-Agent": "probe/1"},
                environ_base={"REMOTE_ADDR": "127.0.0.1"},
            )
            client.get("/api/v1/lookup/10.1.2.3", environ_base={"REMOTE_ADDR": "127.0.0.1"})
            own = [requests.labels(path, "GET", "200") for path in ("/json", "/ip")]
            own_before = [counter._value.get() for counter in own]
            for path in ("/json", "/ip"):
                client.get(
                    path,
                    headers={"X-Forwarded-For": "5.6.7.8", "User-Agent": "probe/2"},
                    environ_base={"REMOTE_ADDR": "127.0.0.1"},
                )
            assert [
                counter._value.get() - old for counter, old in zip(own, own_before, strict=True)
            ] == [1, 1]
        assert (ok._value.get() - before[0], missing._value.get() - before[1]) == (1, 1)
        app.test_client().get("/api/v1/lookup/81.2.69.142")  # a cache hit
        lookup_counts[name] = [
            counter._value.get() - old
            for counter, old in zip(lookup_counters, counted, strict=True)
        ]
        records[name] = [
            {
                key: getattr(record, key)
                for key in ("method", "path", "query", "status", "client_ip", "user_agent")
            }
            | {
                "endpoint": record.endpoint,
                "message": _VARYING.sub(" … ms id=… ", record.getMessage()),
            }
            for record in caplog.records
            if record.name == "ipgeo.access"
        ]
    assert records["lean"] == records["flask"]
    assert lookup_counts["lean"] == lookup_counts["flask"]
    assert lookup_counts["lean"][3] >= 1  # the hit was counted as one
    assert [item["client_ip"] for item in records["lean"]] == [
        "5.6.7.8",
        "127.0.0.1",
        "5.6.7.8",
        "5.6.7.8",
    ]
    assert [item["endpoint"] for item in records["lean"]][2:] == ["/json", "/ip"]


@pytest.mark.parametrize(
    "env",
    [
        {"IPGEO_ALLOWED": "10.0.0.0/8"},
        {"IPGEO_RATE_LIMIT": "5/minute"},
        {"IPGEO_CORS_ORIGINS": "https://ok.example"},
        {"IPGEO_REVERSE_DNS": "true"},
    ],
)
def test_not_installed_where_flask_hooks_matter(
    make_settings: Callable[..., Settings], env: dict[str, str]
) -> None:
    app = create_app(make_settings(**env))
    assert not isinstance(app.wsgi_app, LeanLookups)


@pytest.mark.parametrize("lean", ["true", "false"])
def test_access_log_can_be_left_to_nginx(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture, lean: str
) -> None:
    requests = metrics().requests.labels("/api/v1/lookup/<path:query>", "GET", "200")
    for setting, lines in (("true", 1), ("false", 0)):
        app = create_app(make_settings(IPGEO_LEAN_PATH=lean, IPGEO_ACCESS_LOG=setting))
        before = requests._value.get()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ipgeo.access"):
            assert app.test_client().get("/api/v1/lookup/81.2.69.142").status_code == 200
        assert len([r for r in caplog.records if r.name == "ipgeo.access"]) == lines
        assert requests._value.get() - before == 1  # metrics either way
