"""Visit counter, rate limits, allowlist and Redis outages, through the app on a real Redis."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis
from flask import Flask

from tests.conftest import free_port

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "User-Agent": "Mozilla/5.0"}


def test_json_counts_visits_per_client_ip(
    make_app: Callable[..., Flask], redis_url: str, redisdb: redis.Redis
) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url).test_client()
    assert client.get("/json").json["visits"] == 1
    assert client.get("/json").json["visits"] == 2
    other = {"REMOTE_ADDR": "81.2.69.142"}
    assert client.get("/json", environ_base=other).json["visits"] == 1
    assert client.get("/json?fields=ip").json == {"ip": "127.0.0.1"}
    assert client.get("/json?fields=ip,visits").json == {"ip": "127.0.0.1", "visits": 4}
    assert b"<visits>5</visits>" in client.get("/json?format=xml").data
    client.head("/json")
    assert client.get("/json?fields=bogus").status_code == 400  # rejected, not counted
    assert int(redisdb.get("visits:127.0.0.1")) == 5  # type: ignore[arg-type]
    assert int(redisdb.get("visits:81.2.69.142")) == 1  # type: ignore[arg-type]
    assert redisdb.ttl("visits:127.0.0.1") == -1  # no TTL by default


def test_home_page_shows_visits_and_curl_is_not_counted(
    make_app: Callable[..., Flask], redis_url: str, redisdb: redis.Redis
) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url).test_client()
    client.get("/json")
    page = client.get("/", headers=BROWSER)
    assert page.status_code == 200
    assert 'id="visits">2 visits so far<' in page.text
    assert client.get("/", headers={"User-Agent": "curl/8.5.0"}).text == "127.0.0.1\n"
    assert int(redisdb.get("visits:127.0.0.1")) == 2  # type: ignore[arg-type]


def test_visit_ttl(make_app: Callable[..., Flask], redis_url: str, redisdb: redis.Redis) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url, IPGEO_VISIT_TTL="100").test_client()
    assert client.get("/json").json["visits"] == 1
    assert client.get("/json").json["visits"] == 2
    assert 0 < redisdb.ttl("visits:127.0.0.1") <= 100


def test_without_redis_visits_are_omitted(client: Flask) -> None:
    body = client.get("/json").json  # type: ignore[attr-defined]
    assert "visits" not in body
    assert "redis" not in client.get("/readyz").json["checks"]  # type: ignore[attr-defined]
    assert "RateLimit-Limit" not in client.get("/json").headers  # type: ignore[attr-defined]


def test_openapi_documents_visits(client: Flask) -> None:
    spec = client.get("/api/openapi.json").json  # type: ignore[attr-defined]
    own = spec["components"]["schemas"]["OwnLookup"]["properties"]
    assert own["visits"]["type"] == "integer"
    responses = spec["paths"]["/json"]["get"]["responses"]
    assert {"403", "429"} <= set(responses)
    assert "429" not in spec["paths"]["/healthz"]["get"]["responses"]


def test_rate_limit_per_client_ip(
    make_app: Callable[..., Flask], redis_url: str, redisdb: redis.Redis
) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url, IPGEO_RATE_LIMIT="5/minute").test_client()
    remaining = []
    for i in range(5):
        # An untrusted peer's X-Forwarded-For is ignored: it neither resets the limit nor
        # changes whose counter moves.
        response = client.get("/json", headers={"X-Forwarded-For": f"203.0.113.{i}"})
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "5"
        assert 0 < int(response.headers["RateLimit-Reset"]) <= 61
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    sixth = client.get("/api/v1/lookup/8.8.8.8", headers={"X-Forwarded-For": "198.51.100.7"})
    assert sixth.status_code == 429
    assert sixth.json["error"]["code"] == "rate_limited"
    assert 1 <= int(sixth.headers["Retry-After"]) <= 61
    assert sixth.headers["RateLimit-Remaining"] == "0"
    assert int(redisdb.get("visits:127.0.0.1")) == 5  # type: ignore[arg-type]
    assert redisdb.get("visits:203.0.113.0") is None
    # Probes and static files are exempt; other clients have their own quota.
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/static/css/site.css").status_code == 200
    assert client.options("/json").status_code == 200
    assert client.get("/json", environ_base={"REMOTE_ADDR": "81.2.69.142"}).status_code == 200


def test_rate_limit_keys_on_the_real_client_behind_a_trusted_proxy(
    make_app: Callable[..., Flask], redis_url: str
) -> None:
    client = make_app(
        IPGEO_REDIS_URL=redis_url, IPGEO_RATE_LIMIT="2/minute", IPGEO_TRUSTED_PROXIES="127.0.0.1"
    ).test_client()
    for client_ip in ("203.0.113.1", "203.0.113.2"):
        statuses = [
            client.get("/ip", headers={"X-Forwarded-For": client_ip}).status_code for _ in range(3)
        ]
        assert statuses == [200, 200, 429]


def test_rate_limit_exempt_networks(make_app: Callable[..., Flask], redis_url: str) -> None:
    client = make_app(
        IPGEO_REDIS_URL=redis_url,
        IPGEO_RATE_LIMIT="1/minute",
        IPGEO_RATE_LIMIT_EXEMPT="127.0.0.0/8;2001:db8::/32",
    ).test_client()
    assert all(client.get("/ip").status_code == 200 for _ in range(5))
    assert "RateLimit-Limit" not in client.get("/ip").headers
    outsider = {"REMOTE_ADDR": "81.2.69.142"}
    assert [client.get("/ip", environ_base=outsider).status_code for _ in range(2)] == [200, 429]


def test_batch_is_charged_per_query(make_app: Callable[..., Flask], redis_url: str) -> None:
    client = make_app(IPGEO_REDIS_URL=redis_url, IPGEO_RATE_LIMIT="10/minute").test_client()
    first = client.post("/api/v1/batch", json=["8.8.8.8", "1.1.1.1", "81.2.69.142", "9.9.9.9"])
    assert first.status_code == 200
    assert first.headers["RateLimit-Remaining"] == "6"
    too_many = client.post("/api/v1/batch", json=["8.8.8.8"] * 7)
    assert too_many.status_code == 429
    assert "Retry-After" in too_many.headers
    assert client.get("/ip").headers["RateLimit-Remaining"] == "5"


def test_allowlist(make_app: Callable[..., Flask]) -> None:
    client = make_app(IPGEO_ALLOWED="10.0.0.0/8").test_client()
    refused = client.get("/json")
    assert refused.status_code == 403
    assert refused.json == {
        "error": {"code": "forbidden", "message": "127.0.0.1 is not allowed to use this service"}
    }
    assert client.get("/api/v1/lookup/8.8.8.8", headers=BROWSER).status_code == 403
    page = client.get("/", headers=BROWSER)
    assert page.status_code == 403
    assert page.mimetype == "text/html"
    assert "Access denied" in page.text
    assert client.get("/nope").status_code == 403
    # Probes and the page's stylesheet stay open.
    assert client.get("/healthz").status_code == 200
    assert client.get("/static/css/site.css").status_code == 200
    # A spoofed header from an untrusted peer does not get in.
    assert client.get("/json", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 403
    assert client.get("/json", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200

    listed = make_app(IPGEO_ALLOWED="10.0.0.0/8;127.0.0.1;").test_client()
    assert listed.get("/json").status_code == 200
    assert listed.get("/json", environ_base={"REMOTE_ADDR": "::1"}).status_code == 403

    proxied = make_app(IPGEO_ALLOWED="10.0.0.0/8", IPGEO_TRUSTED_PROXIES="127.0.0.1").test_client()
    assert proxied.get("/json", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200
    assert proxied.get("/json", headers={"X-Forwarded-For": "10.1.2.3, 8.8.8.8"}).status_code == 403


def test_redis_down_lookups_still_answer(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(IPGEO_REDIS_URL=dead, IPGEO_RATE_LIMIT="2/minute").test_client()
    for _ in range(20):
        response = client.get("/json")
        assert response.status_code == 200
        assert "visits" not in response.json
        assert client.get("/api/v1/lookup/8.8.8.8").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "degraded"
    assert ready.json["checks"]["redis"]["status"] == "degraded"
    warnings = [r for r in caplog.records if r.name == "ipgeo.redis"]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks per request"


def test_redis_down_json_answers_without_visits(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = make_app(IPGEO_REDIS_URL=dead).test_client()
    for _ in range(20):
        response = client.get("/json", environ_base={"REMOTE_ADDR": "81.2.69.142"})
        assert response.status_code == 200
        assert response.json["city"] == "Gamlingay"
        assert "visits" not in response.json
    warnings = [r for r in caplog.records if r.name == "ipgeo.redis"]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks per request"


def test_rate_limit_without_redis_counts_in_memory(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    client = make_app(IPGEO_RATE_LIMIT="2/minute").test_client()
    assert "per process" in caplog.text
    assert [client.get("/ip").status_code for _ in range(3)] == [200, 200, 429]
