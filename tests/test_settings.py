from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from ipgeo.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.city_db is None
    assert settings.trusted_proxies == ()
    assert settings.languages == ("en",)
    assert settings.cors_origins == ("*",)
    assert settings.batch_limit == 1000
    assert settings.db_max_download == 2 * 1024**3
    assert settings.client_ipv6_prefix == 64


def test_parses_values() -> None:
    settings = Settings.from_env(
        {
            "IPGEO_TRUSTED_PROXIES": "127.0.0.1; 10.0.0.0/8;",
            "IPGEO_LANGUAGES": "de,fr",
            "IPGEO_BATCH_LIMIT": "50",
            "IPGEO_CORS_ORIGINS": "https://a.example,https://b.example:8443",
            "IPGEO_DNS_SERVERS": "127.0.0.1:5353;[::1]:53;9.9.9.9",
        }
    )
    assert settings.trusted_proxies == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    assert settings.languages == ("de", "fr", "en")
    assert settings.batch_limit == 50
    assert settings.dns_servers == (("127.0.0.1", 5353), ("::1", 53), ("9.9.9.9", 53))


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.batch_limit = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("IPGEO_BATCH_LIMIT", "many", "not a whole number"),
        ("IPGEO_BATCH_LIMIT", "0", "outside"),
        ("IPGEO_TRUSTED_PROXIES", "10.0.0.0/8;nope", "'nope'"),
        ("IPGEO_LANGUAGES", "english!", "language code"),
        ("IPGEO_LANGUAGES", " ", "at least one"),
        ("IPGEO_CORS_ORIGINS", "example.com", "origin"),
        ("IPGEO_DNS_SERVERS", "dns.example", "IP address"),
        ("IPGEO_DNS_TIMEOUT", "-1", "outside"),
        ("IPGEO_REVERSE_DNS", "maybe", "boolean"),
        ("IPGEO_LOG_FORMAT", "xml", "one of"),
        ("IPGEO_DB_MAX_DOWNLOAD", "lots", "not a size"),
        ("IPGEO_DB_MAX_DOWNLOAD", "10", "outside"),
        ("IPGEO_CLIENT_IPV6_PREFIX", "0", "outside 1..128"),
        ("IPGEO_CLIENT_IPV6_PREFIX", "129", "outside 1..128"),
    ],
)
def test_bad_values_name_the_variable(variable: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({variable: value})
    assert info.value.variable == variable
    assert str(info.value).startswith(variable)
    assert fragment in str(info.value)


def test_bad_value_stops_the_cli_with_a_clear_message() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ipgeo", "db", "info"],
        env={"IPGEO_BATCH_LIMIT": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "IPGEO_BATCH_LIMIT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    for variable, _, doc in Settings.describe():
        assert f"`{variable}`" in readme, f"{variable} is missing from the README table"
        assert doc in readme, f"the README description of {variable} is stale"
