"""The request pipeline: every route through the same stages, in their order, on a real Redis."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException

from ipgeo.metrics import metrics
from ipgeo.web.exchange import Exchange
from ipgeo.web.pipeline import RequestPipeline
from tests.servers import RedisServer

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "User-Agent": "Mozilla/5.0"}

# (path with a query string, status for an allowed caller, endpoint label) of every route kind
ROUTES = [
    ("/api/v1/lookup/81.2.69.142?fields=ip,city&lang=de", 200, "/api/v1/lookup/<path:query>"),
    ("/api/v1/lookup/81.2.69.142?format=csv", 200, "/api/v1/lookup/<path:query>"),
    ("/json?fields=ip", 200, "/json"),
    ("/ip?x=1", 200, "/ip"),
    ("/country?ip=81.2.69.142", 200, "/country"),
    ("/api/v1/meta?x=1", 200, "/api/v1/meta"),
    ("/api/openapi.json?x=1", 200, "/api/openapi.json"),
    ("/lookup/8.8.8.8?lang=de", 200, "/lookup/<path:query>"),
    ("/docs?x=1", 200, "/docs"),
    ("/jobs?x=1", 200, "/jobs"),
    ("/api/v1/jobs/abc?x=1", 503, "/api/v1/jobs/<job_id>"),  # no Redis for jobs here
    ("/no/such/page?x=1", 404, "<unmatched>"),
]


def _requests(endpoint: str, status: int) -> float:
    value: float = metrics().requests.labels(endpoint, "GET", str(status))._value.get()
    return value


@pytest.mark.parametrize(("url", "status", "endpoint"), ROUTES)
def test_every_route_kind_gets_every_stage(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    url: str,
    status: int,
    endpoint: str,
) -> None:
    client = make_app(IPGEO_CORS_ORIGINS="*").test_client()
    before = _requests(endpoint, status)
    with caplog.at_level(logging.INFO, logger="ipgeo.access"):
        response = client.get(url, headers={"X-Request-ID": "route-1", "User-Agent": "probe/1"})
    assert response.status_code == status, response.data[:200]
    assert response.headers.getlist("X-Request-ID") == ["route-1"]
    assert response.headers.getlist("X-Database-Build") == ["2019-12-24T17:41:41Z"]
    assert _requests(endpoint, status) - before == 1
    [record] = [r for r in caplog.records if r.name == "ipgeo.access"]
    path, _, query = url.partition("?")
    assert (record.path, record.query, record.status, record.endpoint) == (  # type: ignore[attr-defined]
        path,
        query,
        status,
        endpoint,
    )
    assert f'"GET {url}" {status}' in record.getMessage()
    cors = response.headers.getlist("Access-Control-Allow-Origin")
    api_paths = ("/api/v1/lookup/", "/json", "/ip", "/country", "/api/v1/meta", "/api/openapi")
    assert cors == (["*"] if path.startswith(api_paths) else [])


@pytest.mark.parametrize(("url", "status", "endpoint"), ROUTES)
def test_the_allowlist_refuses_every_route_kind_and_still_observes(
    make_app: Callable[..., Flask],
    caplog: pytest.LogCaptureFixture,
    url: str,
    status: int,
    endpoint: str,
) -> None:
    client = make_app(IPGEO_ALLOWED="10.0.0.0/8").test_client()
    before = _requests(endpoint, 403)
    with caplog.at_level(logging.INFO, logger="ipgeo.access"):
        refused = client.get(url, headers={"X-Request-ID": "refused-2"})
    assert refused.status_code == 403
    assert refused.json == {
        "error": {"code": "forbidden", "message": "127.0.0.1 is not allowed to use this service"}
    }
    assert refused.headers["X-Request-ID"] == "refused-2"
    assert _requests(endpoint, 403) - before == 1
    assert [r.status for r in caplog.records if r.name == "ipgeo.access"] == [403]  # type: ignore[attr-defined]
    page = client.get(url, headers=BROWSER)
    wants_page = not url.startswith("/api/")
    assert (page.status_code, page.mimetype) == (
        403,
        "text/html" if wants_page else "application/json",
    )
    if wants_page:
        assert "Access denied" in page.text and "Content-Security-Policy" in page.headers
    allowed = client.get(url, environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert allowed.status_code == status


@pytest.mark.parametrize("url", ["/api/v1/lookup/81.2.69.142?lang=de", "/docs?x=1"])
def test_the_access_log_can_be_left_to_nginx(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture, url: str
) -> None:
    endpoint = "/docs" if url.startswith("/docs") else "/api/v1/lookup/<path:query>"
    for setting, lines in (("true", 1), ("false", 0)):
        client = make_app(IPGEO_ACCESS_LOG=setting).test_client()
        before = _requests(endpoint, 200)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="ipgeo.access"):
            assert client.get(url).status_code == 200
        assert len([r for r in caplog.records if r.name == "ipgeo.access"]) == lines
        assert _requests(endpoint, 200) - before == 1  # metrics either way


def test_probes_and_static_files_pass_the_allowlist(make_app: Callable[..., Flask]) -> None:
    client = make_app(IPGEO_ALLOWED="10.0.0.0/8").test_client()
    for url in ("/healthz?x=1", "/readyz", "/static/css/site.css?v=1"):
        assert client.get(url).status_code == 200, url


def test_stages_that_are_off_add_nothing(make_app: Callable[..., Flask]) -> None:
    client = make_app(IPGEO_CORS_ORIGINS="").test_client()
    response = client.get("/api/v1/lookup/81.2.69.142?lang=de")
    assert response.status_code == 200
    assert sorted(response.headers.keys()) == [
        "Content-Length",
        "Content-Type",
        "X-Database-Build",
        "X-Request-ID",
    ]


def test_head_and_options_of_pipeline_routes(client: Flask) -> None:
    get = client.get("/api/v1/lookup/8.8.8.8?fields=ip,country_iso")  # type: ignore[attr-defined]
    head = client.head("/api/v1/lookup/8.8.8.8?fields=ip,country_iso")  # type: ignore[attr-defined]
    assert (head.status_code, head.data) == (200, b"")
    assert head.headers["Content-Length"] == str(len(get.data))
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    preflight = client.options(  # type: ignore[attr-defined]
        "/json",
        headers={"Origin": "https://x.example", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert sorted(preflight.headers["Allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD, OPTIONS"
    assert preflight.headers["Access-Control-Max-Age"] == "86400"
    assert client.put("/json").status_code == 405  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("path_info", "status"),
    [
        ("/api/v1/lookup/1.1.1.1\n", 404),  # Flask's URL rule takes no newline: one answer
        ("/api/v1/lookup/1.1.1.1\r", 200),  # the rule takes it; the query is stripped
        ("/api/v1/lookup//1.1.1.1", 404),
        ("/api/v1/lookup/", 404),
        ("//api/v1/lookup/1.1.1.1", 200),
        ("/api/v1/lookup/1.1.1.1/", 400),  # "1.1.1.1/" is the (bad) query
        ("/json/", 404),
        ("//json", 200),
        ("", 308),  # to "/"
    ],
)
def test_paths_are_matched_as_flask_matches_them(
    client: Flask, path_info: str, status: int
) -> None:
    response = client.get("/", environ_overrides={"PATH_INFO": path_info})  # type: ignore[attr-defined]
    assert response.status_code == status


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("/api/v1/lookup/not-an-ip!!?lang=!!&fields=nope&format=yaml", "invalid_lang"),
        ("/api/v1/lookup/not-an-ip!!?fields=nope&format=yaml", "invalid_query"),
        ("/api/v1/lookup/8.8.8.8?fields=nope&format=yaml", "invalid_fields"),
        ("/api/v1/lookup/8.8.8.8?format=yaml&lang=de", "invalid_format"),
        ("/json?fields=nope&format=yaml&lang=!!", "invalid_fields"),
        ("/json?format=yaml&lang=!!", "invalid_format"),
        ("/country?ip=nope&lang=!!", "invalid_query"),
    ],
)
def test_errors_come_in_their_order(client: Flask, url: str, code: str) -> None:
    response = client.get(url)  # type: ignore[attr-defined]
    assert response.status_code == 400
    assert response.json["error"]["code"] == code


def test_accept_negotiation_of_the_api(client: Flask) -> None:
    expected = {
        "": "application/json",
        "*/*": "application/json",
        "text/csv": "text/csv; charset=utf-8",
        "text/xml": "application/xml; charset=utf-8",
        "text/plain;q=0.5, application/xml;q=0.9": "application/xml; charset=utf-8",
        BROWSER["Accept"]: "application/json",  # a browser gets JSON, not XML
    }
    for accept, content_type in expected.items():
        response = client.get("/api/v1/lookup/8.8.8.8", headers={"Accept": accept})  # type: ignore[attr-defined]
        assert response.headers["Content-Type"] == content_type, accept


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


_HANDSHAKE = frozenset({"HELLO", "CLIENT", "AUTH", "SELECT"})


def _sent_commands(server: RedisServer, action: Callable[[], None]) -> list[str]:
    """The commands clients sent Redis while ``action`` ran (``MONITOR``; not scripts' own)."""
    with server.client().monitor() as monitor:
        action()
        server.client().echo("monitor-end")
        sent = []
        while (entry := monitor.next_command())["command"] != "ECHO monitor-end":
            name = entry["command"].split(" ")[0].upper()
            # a connection's handshake (redis-py 8 says HELLO) is not a request's round trip
            if entry["client_type"] != "lua" and name not in _HANDSHAKE:
                sent.append(name)
    return sent


def test_the_rate_limit_costs_one_redis_round_trip(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    client = make_app(
        IPGEO_REDIS_URL=private_redis.url, IPGEO_RATE_LIMIT="60/minute;1000/hour;5000/day"
    ).test_client()
    client.get("/api/v1/lookup/8.8.8.8")  # the first call loads the script

    def requests() -> None:
        for url in ("/api/v1/lookup/8.8.8.8?lang=de", "/ip", "/docs", "/country?ip=8.8.8.8"):
            response = client.get(url)
            assert response.status_code == 200
            assert response.headers["RateLimit-Policy"] == "60;w=60, 1000;w=3600, 5000;w=86400"
        batch = client.post("/api/v1/batch", json=["8.8.8.8", "1.1.1.1", "9.9.9.9"])
        assert batch.headers["RateLimit-Remaining"] == str(60 - 1 - 4 - 3)

    # a limit under 64 per minute is never claimed ahead: one call per request
    assert _sent_commands(private_redis, requests) == ["EVALSHA"] * 5


def test_a_busy_client_spends_leases_between_round_trips(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    client = make_app(
        IPGEO_REDIS_URL=private_redis.url, IPGEO_RATE_LIMIT="100000/minute;1000000/hour"
    ).test_client()
    client.get("/ip", environ_base={"REMOTE_ADDR": "10.0.0.1"})  # loads the script
    remaining: list[int] = []

    def requests() -> None:
        for _ in range(300):
            response = client.get("/api/v1/lookup/8.8.8.8")
            remaining.append(int(response.headers["RateLimit-Remaining"]))

    sent = _sent_commands(private_redis, requests)
    # claims double up to 64 units: 1 + 1 + 2 + 4 + ... + 64 + 64 + ... covers 300 requests
    assert set(sent) == {"EVALSHA"} and len(sent) <= 12
    assert remaining == list(range(100000 - 1, 100000 - 301, -1))  # one process: exact


def test_the_allowlist_comes_before_the_rate_limit(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    client = make_app(
        IPGEO_REDIS_URL=private_redis.url, IPGEO_RATE_LIMIT="2/minute", IPGEO_ALLOWED="10.0.0.0/8"
    ).test_client()
    insider = {"REMOTE_ADDR": "10.0.0.1"}
    assert client.get("/ip", environ_base=insider).status_code == 200  # loads the script

    def refused() -> None:
        for _ in range(5):
            response = client.get("/api/v1/lookup/8.8.8.8")
            assert response.status_code == 403
            assert "RateLimit-Limit" not in response.headers

    assert _sent_commands(private_redis, refused) == []  # refused clients cost no Redis call

    def limited() -> None:
        assert client.get("/ip", environ_base=insider).status_code == 200
        response = client.get("/ip", environ_base=insider)
        assert (response.status_code, response.json["error"]["code"]) == (429, "rate_limited")
        assert response.headers["X-Request-ID"] and response.headers["Retry-After"]

    assert _sent_commands(private_redis, limited) == ["EVALSHA", "EVALSHA"]


def test_a_refusal_of_the_first_limit_costs_nothing_in_the_others(
    make_app: Callable[..., Flask], private_redis: RedisServer
) -> None:
    from limits import parse_many
    from limits.storage import RedisStorage
    from limits.strategies import SlidingWindowCounterRateLimiter

    client = make_app(IPGEO_REDIS_URL=private_redis.url, IPGEO_RATE_LIMIT="3/minute;10/hour")
    statuses = [client.test_client().get("/ip").status_code for _ in range(6)]
    assert statuses == [200, 200, 200, 429, 429, 429]
    # ``limits``' own reading of the same keys: 3 counted in each window, none of the refusals
    library = SlidingWindowCounterRateLimiter(RedisStorage(private_redis.url))
    minute, hour = parse_many("3/minute;10/hour")
    assert library.get_window_stats(minute, "ipgeo", "127.0.0.1", "global").remaining == 0
    assert library.get_window_stats(hour, "ipgeo", "127.0.0.1", "global").remaining == 7


def test_rate_limits_fail_open_when_redis_dies(
    make_app: Callable[..., Flask],
    private_redis: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(IPGEO_REDIS_URL=private_redis.url, IPGEO_RATE_LIMIT="50/minute")
    guard = app.extensions["ipgeo.redis"]
    guard.retry_after = 0  # try Redis on every request: no waiting in this test
    client = app.test_client()
    assert client.get("/api/v1/lookup/8.8.8.8").headers["RateLimit-Remaining"] == "49"
    caplog.set_level("WARNING")
    private_redis.kill()
    for _ in range(10):
        response = client.get("/api/v1/lookup/8.8.8.8?fields=ip")
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers
    warnings = [r.getMessage() for r in caplog.records if r.name == "ipgeo.redis"]
    assert len(warnings) == 1 and "rate limiting" in warnings[0]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks per request"
    private_redis.start()  # same port, the same append-only file
    assert client.get("/api/v1/lookup/8.8.8.8").headers["RateLimit-Remaining"] == "48"
    assert "Redis is reachable again" in caplog.text


PATH_PIECES = st.sampled_from(
    ["/api/v1/lookup/", "/json", "/ip", "/country", "/api/v1/batch", "/healthz", "/", "//", "x"]
)
PATH_TAILS = st.text(alphabet="/.:\n\r %ab81", max_size=12)


@given(
    pieces=st.lists(PATH_PIECES, min_size=0, max_size=3),
    tail=PATH_TAILS,
    method=st.sampled_from(["GET", "HEAD", "POST", "OPTIONS", "PUT"]),
)
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
def test_routes_are_found_as_werkzeug_finds_them(
    app: Flask, pieces: list[str], tail: str, method: str
) -> None:
    pipeline = app.wsgi_app
    assert isinstance(pipeline, RequestPipeline)
    path_info = "".join(pieces) + tail
    exchange = Exchange({"PATH_INFO": path_info, "REQUEST_METHOD": method}, pipeline.clients)
    route = pipeline.router.route(exchange)
    adapter = app.url_map.bind("localhost", subdomain="")
    try:
        rule, args = adapter.match(path_info, method, return_rule=True)
    except HTTPException:
        assert (exchange.rule, route) == (None, None)
        return
    assert (exchange.rule, exchange.endpoint, exchange.args) == (rule.rule, rule.endpoint, args)
    served = route is not None
    assert served == (rule.endpoint in pipeline.router.by_endpoint and method != "OPTIONS")
