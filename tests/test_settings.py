from __future__ import annotations

import ipaddress
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from ipgeo.allowlist import is_allowed
from ipgeo.clientip import client_ip
from ipgeo.nginxconf import nginx_include
from ipgeo.settings import Settings, SettingsError, parse_networks
from ipgeo.settings_groups import variables

ROOT = Path(__file__).resolve().parent.parent


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.city_db is None
    assert settings.trusted_proxies == ()
    assert settings.languages == ("en",)
    assert settings.cors_origins == ("*",)
    assert settings.batch_limit == 1000
    assert settings.updates.max_download == 2 * 1024**3
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
    assert settings.dns.servers == (("127.0.0.1", 5353), ("::1", 53), ("9.9.9.9", 53))


def test_settings_are_frozen() -> None:
    settings = Settings.from_env({})
    with pytest.raises(AttributeError):
        settings.batch_limit = 5  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.dns.timeout = 5  # type: ignore[misc]


def test_groups_read_their_variables() -> None:
    settings = Settings.from_env(
        {
            "IPGEO_MAXMIND_ACCOUNT_ID": "42",
            "IPGEO_MAXMIND_LICENSE_KEY": "secret_key_mmk",
            "IPGEO_MAXMIND_EDITIONS": "GeoLite2-Country",
            "IPGEO_DBIP_URL": "https://mirror.example/dbip",
            "IPGEO_DB_MAX_DOWNLOAD": "3G",
            "IPGEO_DASHBOARD_USER": "admin",
            "IPGEO_DASHBOARD_AUTH_LIMIT": "",
            "IPGEO_DNS_TIMEOUT": "0.5",
            "IPGEO_REVERSE_DNS": "yes",
            "IPGEO_MAP_ATTRIBUTION": "Tiles by us",
            "IPGEO_TZ_NEAREST_KM": "0",
        }
    )
    assert settings.updates.account_id == 42
    assert settings.updates.license_key == "secret_key_mmk"
    assert settings.updates.editions == ("GeoLite2-Country",)
    assert settings.updates.dbip_url == "https://mirror.example/dbip/"
    assert settings.updates.max_download == 3 * 1024**3
    assert (settings.dashboard.user, settings.dashboard.auth_limit) == ("admin", "")
    assert settings.dashboard.password == ""
    assert (settings.dns.timeout, settings.dns.servers, settings.dns.reverse_lookup) == (
        0.5,
        (),
        True,
    )
    assert (settings.maps.tiles, settings.maps.attribution) == ("", "Tiles by us")
    assert settings.timezones.nearest_km == 0.0
    assert settings.timezones.timeout == 0.5
    defaults = Settings.from_env({})
    assert defaults.dashboard.auth_limit == "5/minute"
    assert defaults.updates.dbip_url == "https://download.db-ip.com/free/"


def test_a_group_field_is_replaced_through_its_group() -> None:
    settings = Settings.from_env({"IPGEO_DNS_SERVERS": "9.9.9.9"})
    changed = replace(settings, dns=replace(settings.dns, timeout=7.0))
    assert (changed.dns.timeout, changed.dns.servers) == (7.0, (("9.9.9.9", 53),))
    assert settings.dns.timeout == 2.0


def test_repr_hides_the_secrets() -> None:
    settings = Settings.from_env(
        {
            "IPGEO_MAXMIND_LICENSE_KEY": "hidden_key_mmk",
            "IPGEO_DASHBOARD_PASSWORD": "hidden-password",
            "IPGEO_WEBSERVICE_ACCOUNTS": "42:hidden-license",
        }
    )
    assert settings.dashboard.password == "hidden-password"
    for text in (repr(settings), repr(settings.updates), repr(settings.dashboard)):
        for secret in ("hidden_key_mmk", "hidden-password", "hidden-license"):
            assert secret not in text


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
        ("IPGEO_ALLOWED", "10.0.0.0/8;fe80::%eth0/64", "'fe80::%eth0/64' has a zone id"),
        ("IPGEO_TRUSTED_PROXIES", "fe80::1%eth0", "zone id"),
        ("IPGEO_DB_MAX_DOWNLOAD", "lots", "not a size"),
        ("IPGEO_DB_MAX_DOWNLOAD", "10", "outside"),
        ("IPGEO_CLIENT_IPV6_PREFIX", "0", "outside 1..128"),
        ("IPGEO_CLIENT_IPV6_PREFIX", "129", "outside 1..128"),
        ("IPGEO_MAXMIND_ACCOUNT_ID", "me", "not a whole number"),
        ("IPGEO_DASHBOARD_AUTH_LIMIT", "often", "rate"),
        ("IPGEO_DATABASE_TIMEOUT", "0", "outside"),
        ("IPGEO_MAP_TILES", "https://tiles.example/map.png", "{z}"),
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


def test_readme_table_lists_the_settings_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("<!-- settings-table:start -->", 1)[1].split(
        "<!-- settings-table:end -->"
    )[0]
    listed = re.findall(r"^\| `(IPGEO_[A-Z0-9_]+)` \|", table, flags=re.M)
    assert listed == [variable for variable, _, _ in Settings.describe()]


NETWORK_SETTINGS = [
    ("IPGEO_ALLOWED", "allowed"),
    ("IPGEO_TRUSTED_PROXIES", "trusted_proxies"),
    ("IPGEO_RATE_LIMIT_EXEMPT", "rate_limit_exempt"),
    ("IPGEO_METRICS_ALLOWED", "metrics_allowed"),
]

NETWORK_ENTRIES = [
    # entry, the network it stands for (client addresses are compared as IPv4 when mapped)
    ("::ffff:10.1.2.3", "10.1.2.3/32"),
    ("::ffff:10.1.2.0/120", "10.1.2.0/24"),
    ("::ffff:10.1.2.3/120", "10.1.2.0/24"),
    ("::FFFF:a01:203", "10.1.2.3/32"),
    ("::ffff:10.1.2.3/128", "10.1.2.3/32"),
    ("::ffff:0:0/96", "0.0.0.0/0"),
    # not (only) IPv4-mapped addresses: kept as written
    ("::ffff:0:0/95", "::fffe:0:0/95"),
    ("::/0", "::/0"),
    ("::10.1.2.3", "::a01:203/128"),
    ("2001:db8::/32", "2001:db8::/32"),
    ("10.0.0.0/8", "10.0.0.0/8"),
]


@pytest.mark.parametrize(("entry", "network"), NETWORK_ENTRIES)
@pytest.mark.parametrize(("variable", "attribute"), NETWORK_SETTINGS)
def test_network_lists_take_ipv4_mapped_entries_as_ipv4(
    variable: str, attribute: str, entry: str, network: str
) -> None:
    settings = Settings.from_env({variable: f"192.0.2.1;{entry}"})
    expected = (ipaddress.ip_network("192.0.2.1/32"), ipaddress.ip_network(network))
    assert getattr(settings, attribute) == expected


def test_every_network_list_setting_is_in_the_table() -> None:
    network_lists = {
        spec.metadata["env"]
        for spec in variables(Settings)
        if spec.metadata["parser"] is parse_networks
    }
    assert network_lists == {variable for variable, _ in NETWORK_SETTINGS}


def test_ipv4_mapped_entries_match_their_clients() -> None:
    settings = Settings.from_env(
        {"IPGEO_ALLOWED": "::ffff:192.0.2.0/120", "IPGEO_TRUSTED_PROXIES": "::ffff:127.0.0.1"}
    )
    for peer in ("192.0.2.9", "::ffff:192.0.2.9"):
        assert is_allowed(client_ip(peer, None, None, settings.trusted_proxies), settings.allowed)
    assert not is_allowed(ipaddress.ip_address("192.0.3.9"), settings.allowed)
    for proxy in ("127.0.0.1", "::ffff:127.0.0.1"):
        client = client_ip(proxy, "198.51.100.7", None, settings.trusted_proxies)
        assert client == ipaddress.ip_address("198.51.100.7")
    assert "allow 192.0.2.0/24;" in nginx_include(settings.allowed, ())
