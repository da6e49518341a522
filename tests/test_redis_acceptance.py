"""Acceptance of issue 4 against real processes: gunicorn (`ipgeo serve`), redis-server, nginx."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests
from pytest_redis.executor import RedisExecutor

from tests.servers import AppServer, Nginx, RedisServer

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


def server_env(data_dir: Path, **env: str) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    return base | {"IPGEO_DATA_DIR": str(data_dir), "IPGEO_DNS_SERVERS": "127.0.0.1:9"} | env


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("killable-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def counting_app(
    own_redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AppServer]:
    tmp = tmp_path_factory.mktemp("counting-app")
    # IPGEO_DB_MAX_AGE_DAYS=0: the bundled 2019 data would make /readyz degraded for its age.
    env = server_env(tmp, IPGEO_REDIS_URL=own_redis.url, IPGEO_DB_MAX_AGE_DAYS="0")
    with AppServer(env, tmp / "app.log", workers=2) as app:
        yield app


def _visits(session: requests.Session, url: str, count: int) -> list[int]:
    seen = []
    for _ in range(count):
        response = session.get(f"{url}/json", timeout=10)
        assert response.status_code == 200, response.text
        seen.append(response.json()["visits"])
    return seen


def test_concurrent_visits_are_counted_exactly(
    counting_app: AppServer, own_redis: RedisServer
) -> None:
    store = own_redis.client()
    before = int(store.get("visits:127.0.0.1") or 0)  # type: ignore[arg-type]
    sessions = [requests.Session() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda s: _visits(s, counting_app.url, 500), sessions))
    seen = sorted(value for values in results for value in values)
    assert seen == list(range(before + 1, before + 4001))  # every INCR answered once
    assert int(store.get("visits:127.0.0.1")) == before + 4000  # type: ignore[arg-type]


def test_redis_killed_and_restarted(counting_app: AppServer, own_redis: RedisServer) -> None:
    session = requests.Session()
    url = counting_app.url
    count = session.get(f"{url}/json", timeout=5).json()["visits"]
    own_redis.kill()  # SIGKILL
    for _ in range(30):
        response = session.get(f"{url}/json", timeout=5)
        assert response.status_code == 200
        assert "visits" not in response.json()
        assert session.get(f"{url}/api/v1/lookup/8.8.8.8", timeout=5).status_code == 200
    ready = session.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["checks"]["redis"]["status"] == "degraded"
    warnings = counting_app.log().count("Redis unavailable")
    assert 1 <= warnings <= 4, counting_app.log()  # once per process and feature

    own_redis.start()  # same port, same data directory (AOF), the app keeps running
    resumed: list[int] = []
    deadline = time.monotonic() + 10
    while len(resumed) < 5 and time.monotonic() < deadline:
        body = session.get(f"{url}/json", timeout=5).json()
        if "visits" in body:  # each worker retries Redis a second after its last failure
            resumed.append(body["visits"])
    # The count survived the SIGKILL and every request after the restart was counted once.
    assert resumed == list(range(count + 1, count + 6))
    assert session.get(f"{url}/readyz", timeout=5).json()["status"] == "ok"


def test_rate_limit_on_a_real_server(
    redis_proc: RedisExecutor, redisdb: redis.Redis, tmp_path: Path
) -> None:
    env = server_env(
        tmp_path,
        IPGEO_REDIS_URL=f"redis://{redis_proc.host}:{redis_proc.port}/0",
        IPGEO_RATE_LIMIT="5/minute",
    )
    with AppServer(env, tmp_path / "app.log") as app:
        for i in range(5):
            spoofed = {"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"198.51.100.{i}"}
            response = requests.get(f"{app.url}/json", headers=spoofed, timeout=5)
            assert response.status_code == 200
            assert response.json()["visits"] == i + 1
        sixth = requests.get(f"{app.url}/json", headers={"X-Forwarded-For": "1.2.3.4"}, timeout=5)
        assert sixth.status_code == 429
        assert sixth.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(sixth.headers["Retry-After"]) <= 61
        assert sixth.headers["RateLimit-Limit"] == "5"
        assert requests.get(f"{app.url}/healthz", timeout=5).status_code == 200
    assert int(redisdb.get("visits:127.0.0.1")) == 5  # type: ignore[arg-type]
    assert redisdb.keys("visits:198.*") == []
    assert redisdb.keys("visits:1.2.3.4") == []


ALLOWLIST_CASES = [
    ("", "10.0.0.0/8"),
    ("", "10.0.0.0/8;127.0.0.1;"),
    ("127.0.0.1", "10.0.0.0/8"),
]


@pytest.mark.parametrize(("trusted", "allowed"), ALLOWLIST_CASES)
def test_allowlist_in_the_app_and_in_nginx(trusted: str, allowed: str, tmp_path: Path) -> None:
    env = server_env(tmp_path, IPGEO_ALLOWED=allowed, IPGEO_TRUSTED_PROXIES=trusted)
    include = subprocess.run(
        [sys.executable, "-m", "ipgeo", "nginx-conf"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "deny all;" in include
    assert ("real_ip_header X-Forwarded-For;" in include) is bool(trusted)
    with AppServer(env, tmp_path / "app.log", workers=1) as app:
        nginx = Nginx(tmp_path / "nginx", app.url, include)
        checked = nginx.test_config()
        assert checked.returncode == 0, checked.stderr
        assert "syntax is ok" in checked.stderr
        expected_local = 200 if "127.0.0.1" in allowed else 403
        with nginx:
            for header, expected in [
                (None, expected_local),
                ("10.1.2.3", 200 if trusted else expected_local),
                ("8.8.8.8", 403 if trusted else expected_local),
            ]:
                headers = {"X-Forwarded-For": header} if header else {}
                direct = requests.get(f"{app.url}/json", headers=headers, timeout=5)
                proxied = requests.get(f"{nginx.url}/json", headers=headers, timeout=5)
                assert (direct.status_code, proxied.status_code) == (expected, expected), header
                if expected == 403:
                    assert direct.json()["error"]["code"] == "forbidden"


def test_embedded_redis_by_default(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = server_env(data)
    with AppServer(env, tmp_path / "app.log", workers=2) as app:
        assert [requests.get(f"{app.url}/json", timeout=5).json()["visits"] for _ in range(3)] == [
            1,
            2,
            3,
        ]
        assert requests.get(f"{app.url}/readyz", timeout=5).json()["checks"]["redis"] == {
            "status": "ok"
        }
        pid = int((data / "redis" / "redis.pid").read_text())
        assert Path(f"/proc/{pid}").exists()
    assert "embedded Redis" in app.log()
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists(), "the embedded Redis stops with the app"
    assert list((data / "redis").glob("appendonly*")), "data files live in IPGEO_DATA_DIR"
    with AppServer(env, tmp_path / "app2.log", workers=1) as app:
        assert requests.get(f"{app.url}/json", timeout=5).json()["visits"] == 4  # survived
