"""The lean lookup path answers exactly as the Flask route does: status, body, headers, logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from flask import Flask

from ipgeo.metrics import metrics
from ipgeo.settings import Settings
from ipgeo.web import create_app
from ipgeo.web.lean import LeanLookups

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
    assert passed == []
    client.get("/api/v1/lookup/81.2.69.142?fields=ip")
    client.get("/api/v1/lookup/example.com")
    client.get("/api/v1/lookup/81.2.69.142", headers={"Accept": "text/csv"})
    client.head("/api/v1/lookup/81.2.69.142")
    assert len(passed) == 4


def test_same_access_log_and_metrics(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    lean, flask = _apps(make_settings, IPGEO_TRUSTED_PROXIES="127.0.0.1")
    requests = metrics().requests
    records: dict[str, list[dict[str, Any]]] = {}
    for name, app in (("lean", lean), ("flask", flask)):
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
        assert (ok._value.get() - before[0], missing._value.get() - before[1]) == (1, 1)
        records[name] = [
            {
                key: getattr(record, key)
                for key in ("method", "path", "query", "status", "client_ip", "user_agent")
            }
            | {"endpoint": record.endpoint, "message": record.getMessage().split(" ms ")[0][:-4]}
            for record in caplog.records
            if record.name == "ipgeo.access"
        ]
    assert records["lean"] == records["flask"]
    assert [item["client_ip"] for item in records["lean"]] == ["5.6.7.8", "127.0.0.1"]


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
