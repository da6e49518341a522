"""Pure parts of the Redis/allowlist features: settings, allowlist matching, nginx include."""

from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from ipgeo.allowlist import in_networks, is_allowed
from ipgeo.nginxconf import nginx_include
from ipgeo.redisstore import RedisGuard, limits_storage_uri
from ipgeo.settings import Settings, SettingsError, parse_networks
from ipgeo.visits import visit_key


def ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(text)


def test_allowed_accepts_the_original_syntax() -> None:
    settings = Settings.from_env({"IPGEO_ALLOWED": "172.18.0.2;172.18.0.0/16;, 2001:db8::/32,"})
    assert [net.with_prefixlen for net in settings.allowed] == [
        "172.18.0.2/32",
        "172.18.0.0/16",
        "2001:db8::/32",
    ]


@pytest.mark.parametrize("bad", ["10.0.0.0/8;nope", "300.1.1.1", "10.0.0.0/33", "fe80::/129"])
def test_an_invalid_allowed_entry_names_the_entry(bad: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"IPGEO_ALLOWED": bad})
    assert info.value.variable == "IPGEO_ALLOWED"
    entry = bad.rsplit(";", maxsplit=1)[-1]
    assert repr(entry) in str(info.value)


def test_invalid_allowed_entry_stops_start_up() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipgeo", "nginx-conf"],
        env={"IPGEO_ALLOWED": "172.18.0.2;172.18.0.0/16;bogus;", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "IPGEO_ALLOWED" in proc.stderr
    assert "'bogus'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "allow" not in proc.stdout


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("IPGEO_RATE_LIMIT", "sixty per fortnight", "not a rate limit"),
        ("IPGEO_RATE_LIMIT", "0/minute", "at least 1"),
        ("IPGEO_RATE_LIMIT_EXEMPT", "10.0.0.0/8;x", "'x'"),
        ("IPGEO_REDIS_URL", "http://localhost", "Redis URL"),
        ("IPGEO_REDIS_URL", "redis://", "Redis URL"),
        ("IPGEO_VISIT_TTL", "-1", "outside"),
        ("IPGEO_VISIT_TTL", "soon", "whole number"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert fragment in str(info.value)


def test_redis_and_rate_limit_values() -> None:
    settings = Settings.from_env(
        {
            "IPGEO_REDIS_URL": "unix:///run/redis.sock",
            "IPGEO_RATE_LIMIT": "60/minute; 2000/hour;",
            "IPGEO_VISIT_TTL": "86400",
        }
    )
    assert settings.redis_url == "unix:///run/redis.sock"
    assert settings.rate_limit == "60/minute;2000/hour"
    assert settings.visit_ttl == 86400
    defaults = Settings.from_env({})
    assert (defaults.redis_url, defaults.rate_limit, defaults.allowed) == (None, "", ())
    assert limits_storage_uri("unix:///run/redis.sock") == "redis+unix:///run/redis.sock"
    assert limits_storage_uri("redis://h:1/2") == "redis://h:1/2"


@pytest.mark.parametrize(
    ("client", "allowed", "expected"),
    [
        ("127.0.0.1", "", True),
        ("127.0.0.1", "10.0.0.0/8", False),
        ("10.200.3.4", "10.0.0.0/8", True),
        ("127.0.0.1", "10.0.0.0/8;127.0.0.1", True),
        ("::ffff:10.1.2.3", "10.0.0.0/8", True),
        ("2001:db8::1", "10.0.0.0/8;2001:db8::/32", True),
        ("2001:db9::1", "10.0.0.0/8;2001:db8::/32", False),
        ("::1", "127.0.0.1", False),
        (None, "10.0.0.0/8", False),
    ],
)
def test_allowlist(client: str | None, allowed: str, expected: bool) -> None:
    networks = parse_networks(allowed, "IPGEO_ALLOWED")
    assert is_allowed(ip(client) if client else None, networks) is expected


def test_in_networks_needs_a_match() -> None:
    assert not in_networks(ip("1.2.3.4"), ())


def test_visit_key_is_canonical() -> None:
    assert visit_key(ip("::ffff:1.2.3.4")) == "visits:1.2.3.4"
    assert visit_key(ip("1.2.3.4")) == "visits:1.2.3.4"
    assert visit_key(ip("2001:DB8:0:0::1")) == "visits:2001:db8::/64"
    assert visit_key(ip("2001:DB8:0:0::1"), 128) == "visits:2001:db8::1/128"


def test_nginx_include() -> None:
    text = nginx_include(
        parse_networks("10.0.0.0/8;127.0.0.1;2001:db8::/32", "IPGEO_ALLOWED"),
        parse_networks("192.168.0.0/16", "IPGEO_TRUSTED_PROXIES"),
    )
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "set_real_ip_from 192.168.0.0/16;",
        "real_ip_header X-Forwarded-For;",
        "real_ip_recursive on;",
        "allow 10.0.0.0/8;",
        "allow 127.0.0.1/32;",
        "allow 2001:db8::/32;",
        "deny all;",
    ]
    open_to_all = nginx_include((), ())
    assert "deny" not in open_to_all
    assert "allow" not in open_to_all.replace("allowed", "")
    assert "real_ip" not in open_to_all


def test_nginx_conf_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipgeo", "nginx-conf"],
        env={"IPGEO_ALLOWED": "10.0.0.0/8;", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "allow 10.0.0.0/8;\ndeny all;\n" in proc.stdout
    assert "set_real_ip_from" not in proc.stdout


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_guard_backs_off_and_warns_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    guard = RedisGuard(None, retry_after=1.0, warn_interval=60.0, clock=clock)  # type: ignore[arg-type]
    caplog.set_level("WARNING", logger="ipgeo.redis")
    for _ in range(50):
        guard.failed("the visit counter", ConnectionError("refused"))
    assert not guard.available()
    clock.now += 1.5
    assert guard.available()
    guard.failed("the visit counter", ConnectionError("refused"))
    assert len(caplog.records) == 1
    clock.now += 61
    guard.failed("the visit counter", ConnectionError("refused"))
    assert len(caplog.records) == 2
    guard.succeeded()
    guard.succeeded()
    assert [r.getMessage() for r in caplog.records][-1] == "Redis is reachable again"
    assert len(caplog.records) == 3
