"""Shared fixtures: MaxMind test databases, the fake DNS server and app factories."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from pytest_redis.executor import RedisExecutor

from bench.testdata import find_testdata
from ipgeo.settings import Settings
from ipgeo.web import create_app
from tests.fakedns import FakeDnsServer

ROOT = Path(__file__).resolve().parent.parent


TESTDATA = find_testdata()

DNS_RECORDS = {
    "example.test": ["8.8.8.8", "2001:4860:4860::8888"],
    "v6only.test": ["2a00:1450:4001:80b::200e"],
    "xn--bcher-kva.test": ["81.2.69.142"],  # bücher.test
    "private.test": ["10.1.2.3"],
    "mixed.test": ["10.1.2.3", "192.168.7.7", "8.8.8.8", "fd00::1", "2001:4860:4860::8888"],
    "private-a.test": ["10.1.2.3", "2a00:1450:4001:80b::200e"],
    "empty.test": [],
}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not (TESTDATA / "GeoIP2-City-Test.mmdb").is_file():
        pytest.fail(f"MaxMind test databases not found in {TESTDATA}")
    return TESTDATA


@pytest.fixture(scope="session")
def fake_dns() -> Iterator[FakeDnsServer]:
    server = FakeDnsServer(DNS_RECORDS, slow={"slow.test"}).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def make_settings(
    fake_dns: FakeDnsServer, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., Settings]:
    data_dir = tmp_path_factory.mktemp("data")

    def make(**env: str) -> Settings:
        base = {
            "IPGEO_DNS_SERVERS": f"127.0.0.1:{fake_dns.port}",
            "IPGEO_DNS_TIMEOUT": "1",
            "IPGEO_DATA_DIR": str(data_dir),
        }
        return Settings.from_env(base | env)

    return make


@pytest.fixture(scope="session")
def app(make_settings: Callable[..., Settings]) -> Flask:
    """The app over the bundled GeoLite2 City database."""
    return create_app(make_settings())


@pytest.fixture()
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def test_app(make_settings: Callable[..., Settings], testdata: Path) -> Flask:
    """The app over MaxMind's GeoIP2 City and GeoLite2 ASN test databases."""
    return create_app(
        make_settings(
            IPGEO_CITY_DB=str(testdata / "GeoIP2-City-Test.mmdb"),
            IPGEO_ASN_DB=str(testdata / "GeoLite2-ASN-Test.mmdb"),
        )
    )


@pytest.fixture()
def redis_url(redis_proc: RedisExecutor, redisdb: redis.Redis) -> str:
    """TCP URL of the session's private redis-server (pytest-redis), emptied after each test."""
    return f"redis://{redis_proc.host}:{redis_proc.port}/0"


@pytest.fixture()
def make_app(make_settings: Callable[..., Settings], app: Flask) -> Callable[..., Flask]:
    """Build an app with extra settings, sharing the already opened lookup service."""

    def make(**env: str) -> Flask:
        return create_app(make_settings(**env), service=app.extensions["ipgeo.geo"])

    return make
