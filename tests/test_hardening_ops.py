"""Issue 16, operations: metrics labels, the access log, /readyz and /api/v1/meta, client keys.

Against real ``ipgeo serve`` processes and a real redis-server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.servers import AppServer, RedisServer
from tests.test_redis_acceptance import server_env

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")

RATE = 6  # requests per minute per client


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("ops-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def public_app(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory, testdata: Path
) -> Iterator[AppServer]:
    """Text logs; the test client (127.0.0.1) is outside the metrics networks; clients come
    from ``X-Forwarded-For``; a database file that the test may replace."""
    tmp = tmp_path_factory.mktemp("ops-public")
    city = tmp / "city.mmdb"
    shutil.copyfile(testdata / "GeoIP2-City-Test.mmdb", city)
    env = server_env(
        tmp,
        IPGEO_REDIS_URL=redis_server.url,
        IPGEO_RATE_LIMIT=f"{RATE}/minute",
        IPGEO_RATE_LIMIT_EXEMPT="127.0.0.1/32",  # the test's own requests without a header
        IPGEO_TRUSTED_PROXIES="127.0.0.1",
        IPGEO_METRICS_ALLOWED="10.9.9.0/24",
        IPGEO_LOG_FORMAT="text",
        IPGEO_ACCESS_LOG="true",
        IPGEO_CITY_DB=str(city),
        IPGEO_DB_RELOAD_INTERVAL="0.2",
    )
    with AppServer(env, tmp / "app.log", workers=2) as app:
        yield app


@pytest.fixture(scope="module")
def operator_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """JSON logs; the test client is in the metrics networks (the default, loopback)."""
    tmp = tmp_path_factory.mktemp("ops-operator")
    env = server_env(tmp, IPGEO_LOG_FORMAT="json", IPGEO_ACCESS_LOG="true")
    with AppServer(env, tmp / "app.log", workers=1) as app:
        yield app


def _from(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


# -- item 7: metrics labels ----------------------------------------------------------------------
def test_unknown_methods_and_paths_share_one_metrics_series(operator_app: AppServer) -> None:
    url = operator_app.url
    for method in ("QWERTYUI", "ASDFGHJK", "ZXCVBNMM"):
        response = requests.request(method, f"{url}/x-{method.lower()}", timeout=10)
        assert response.status_code < 500, response.text
    requests.request("BREW", f"{url}/api/v1/lookup/8.8.8.8", timeout=10)
    # every worker process counts into the shared exposition; one worker serves here
    metrics = requests.get(f"{url}/metrics", timeout=10)
    assert metrics.status_code == 200, metrics.text
    text = metrics.text
    for name in ("QWERTYUI", "ASDFGHJK", "ZXCVBNMM", "BREW", "x-qwertyui"):
        assert name not in text
    other = [line for line in text.splitlines() if 'method="other"' in line]
    assert any('endpoint="<unmatched>"' in line for line in other), other
    methods = set(re.findall(r'method="([^"]*)"', text))
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "other"}


# -- item 13: the access log ---------------------------------------------------------------------
def _log_after(app: AppServer, marker: str) -> str:
    deadline = time.monotonic() + 10
    while marker not in app.log():
        assert time.monotonic() < deadline, app.log()[-3000:]
        time.sleep(0.05)
    return app.log()


def test_a_path_cannot_write_a_line_of_its_own_into_the_text_log(public_app: AppServer) -> None:
    forged = 'FORGED 127.0.0.1 "GET /admin HTTP/1.1" 200'
    path = "/api/v1/lookup/1.1.1.1%0A" + forged.replace(" ", "%20").replace('"', "%22")
    path += "%0D%1B[31m%5C%7F"
    agent = 'agent" "quoted\\slash'
    response = requests.get(
        f"{public_app.url}{path}?q=a%0Ab", headers={"User-Agent": agent, **_from("192.0.2.31")}
    )
    assert response.status_code in (400, 404), response.text
    log = _log_after(public_app, "1.1.1.1\\x0AFORGED")
    lines = [line for line in log.splitlines() if "FORGED" in line]
    assert len(lines) == 1, lines
    (line,) = lines
    assert not line.startswith("FORGED")
    assert (
        "1.1.1.1\\x0AFORGED 127.0.0.1 \\x22GET /admin HTTP/1.1\\x22 200\\x0D\\x1B[31m\\x5C\\x7F"
        in line
    )
    assert '"agent\\x22 \\x22quoted\\x5Cslash"' in line
    assert "\x1b" not in log and "\r" not in log


def test_the_json_log_keeps_fields_whole(operator_app: AppServer) -> None:
    response = requests.get(
        f"{operator_app.url}/api/v1/lookup/1.1.1.1%0Ainjected%22line", timeout=10
    )
    assert response.status_code in (400, 404)
    log = _log_after(operator_app, "injected")
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (record,) = [item for item in records if "injected" in item.get("path", "")]
    assert record["path"] == '/api/v1/lookup/1.1.1.1\ninjected"line'
    assert not any(line.startswith("injected") for line in log.splitlines())


# -- item 16: /readyz and /api/v1/meta -----------------------------------------------------------
def test_readyz_shows_details_only_to_the_metrics_networks(
    public_app: AppServer, operator_app: AppServer, testdata: Path
) -> None:
    public = requests.get(f"{public_app.url}/readyz", timeout=10)
    assert public.status_code == 200
    body = public.json()
    assert body["status"] in ("ok", "degraded")
    assert set(body["checks"]) >= {"database", "redis"}
    for check in body["checks"].values():
        assert set(check) == {"status"}, body
    assert "mmdb" not in public.text and str(public_app.log_path.parent) not in public.text

    operator = requests.get(f"{operator_app.url}/readyz", timeout=10).json()
    assert operator["checks"]["database"]["path"].endswith(".mmdb")
    assert "generation" in operator["checks"]["database"]


def test_meta_describes_the_database_that_lookups_use_now(
    public_app: AppServer, testdata: Path
) -> None:
    city = public_app.log_path.parent / "city.mmdb"

    def meta_types() -> set[str]:
        # two workers: ask often enough to reach both
        seen = set()
        for _ in range(6):
            meta = requests.get(f"{public_app.url}/api/v1/meta", timeout=10).json()
            seen.add(meta["databases"][0]["database_type"])
        return seen

    assert meta_types() == {"GeoIP2-City"}
    replacement = city.with_name("city.mmdb.new")
    shutil.copyfile(testdata / "GeoLite2-Country-Test.mmdb", replacement)
    os.replace(replacement, city)
    time.sleep(0.5)  # past IPGEO_DB_RELOAD_INTERVAL; no lookup runs meanwhile
    assert meta_types() == {"GeoLite2-Country"}
    replacement = city.with_name("city.mmdb.new")
    shutil.copyfile(testdata / "GeoIP2-City-Test.mmdb", replacement)
    os.replace(replacement, city)
    time.sleep(0.5)
    assert meta_types() == {"GeoIP2-City"}


# -- item 11 (wiring): clients keyed by their IPv6 /64 -------------------------------------------
def _lookups(app: AppServer, ip: str, count: int) -> list[int]:
    return [
        requests.get(
            f"{app.url}/api/v1/lookup/81.2.69.142", headers=_from(ip), timeout=10
        ).status_code
        for _ in range(count)
    ]


def test_addresses_in_one_ipv6_64_share_a_rate_budget(public_app: AppServer) -> None:
    half = RATE // 2
    assert _lookups(public_app, "2001:db8:aa:1::1", half) == [200] * half
    assert _lookups(public_app, "2001:db8:aa:1:ffff:ffff:ffff:fffe", half) == [200] * half
    assert _lookups(public_app, "2001:db8:aa:1::7", 1) == [429]
    assert _lookups(public_app, "2001:db8:aa:2::1", 1) == [200]
    # IPv4 clients still count by address
    assert _lookups(public_app, "198.51.100.1", RATE) == [200] * RATE
    assert _lookups(public_app, "198.51.100.2", 1) == [200]
    assert _lookups(public_app, "198.51.100.1", 1) == [429]


def _visits(app: AppServer, ip: str) -> int:
    response = requests.get(f"{app.url}/json", headers=_from(ip), timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["visits"])


def test_addresses_in_one_ipv6_64_share_a_visit_counter(
    public_app: AppServer, redis_server: RedisServer
) -> None:
    assert _visits(public_app, "2001:db8:bb:1::1") == 1
    assert _visits(public_app, "2001:db8:bb:1::2") == 2
    assert _visits(public_app, "2001:db8:bb:1:abcd::9") == 3
    assert _visits(public_app, "2001:db8:bb:2::1") == 1
    assert _visits(public_app, "203.0.113.9") == 1
    client = redis_server.client()
    try:
        assert client.get("visits:2001:db8:bb:1::/64") == b"3"
        assert client.get("visits:2001:db8:bb:2::/64") == b"1"
        # an IPv4 counter keeps its key, so existing counts carry on
        assert client.get("visits:203.0.113.9") == b"1"
        client.set("visits:203.0.113.10", 41)
    finally:
        client.close()
    assert _visits(public_app, "203.0.113.10") == 42
