"""The MaxMind-compatible web service in the app: body, errors, credentials, and the request
pipeline's allowlist, rate limits and metrics (``tests/test_webservice.py`` runs it for real)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from flask import Flask

from ipgeo.settings import Settings, SettingsError
from ipgeo.web import create_app

CLIENT = {"REMOTE_ADDR": "81.2.69.142"}


def _auth(account: str, key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{account}:{key}".encode()).decode()}


def test_city_answer_is_the_record_in_maxmind_form(test_app: Flask) -> None:
    response = test_app.test_client().get("/geoip/v2.1/city/89.160.20.112", environ_base=CLIENT)
    assert response.status_code == 200
    assert response.content_type == (
        "application/vnd.maxmind.com-city+json; charset=UTF-8; version=1.0"
    )
    body = response.get_json()
    assert body["city"]["names"]["en"] == "Linköping"
    assert body["country"]["is_in_european_union"] is True
    assert body["subdivisions"][0]["iso_code"] == "E"
    assert body["traits"] == {
        "autonomous_system_number": 29518,
        "autonomous_system_organization": "Bredband2 AB",
        "ip_address": "89.160.20.112",
        "network": "89.160.20.112/28",
    }
    assert body["maxmind"] == {"queries_remaining": 999_999_999}
    country = test_app.test_client().get("/geoip/v2.1/country/89.160.20.112").get_json()
    assert set(country) == {"continent", "country", "registered_country", "traits", "maxmind"}
    assert "autonomous_system_number" not in country["traits"]


def test_me_is_the_client(test_app: Flask) -> None:
    body = test_app.test_client().get("/geoip/v2.1/insights/me", environ_base=CLIENT).get_json()
    assert body["traits"]["ip_address"] == "81.2.69.142"
    assert body["city"]["names"]["en"] == "London"


@pytest.mark.parametrize(
    ("address", "status", "code"),
    [
        ("1.2.3", 400, "IP_ADDRESS_INVALID"),
        ("example.com", 400, "IP_ADDRESS_INVALID"),
        ("fe80::1%25eth0", 400, "IP_ADDRESS_INVALID"),
        ("10.0.0.1", 404, "IP_ADDRESS_RESERVED"),
        ("::ffff:127.0.0.1", 404, "IP_ADDRESS_RESERVED"),
        ("1.1.1.1", 404, "IP_ADDRESS_NOT_FOUND"),
    ],
)
def test_errors_carry_maxmind_codes(test_app: Flask, address: str, status: int, code: str) -> None:
    response = test_app.test_client().get(f"/geoip/v2.1/city/{address}")
    assert response.status_code == status
    assert response.content_type.startswith("application/vnd.maxmind.com-error+json")
    assert set(response.get_json()) == {"code", "error"}
    assert response.get_json()["code"] == code


def test_accounts_setting() -> None:
    settings = Settings.from_env({"IPGEO_WEBSERVICE_ACCOUNTS": "1:abc; 22:def;"})
    assert settings.webservice_accounts == (("1", "abc"), ("22", "def"))
    for bad in ("abc", "x:abc", "1:", ":abc"):
        with pytest.raises(SettingsError, match="IPGEO_WEBSERVICE_ACCOUNTS"):
            Settings.from_env({"IPGEO_WEBSERVICE_ACCOUNTS": bad})


def test_credentials(make_app: Callable[..., Flask]) -> None:
    client = make_app(IPGEO_WEBSERVICE_ACCOUNTS="42:key;7:other").test_client()
    url = "/geoip/v2.1/country/8.8.8.8"
    assert client.get(url, headers=_auth("42", "key")).status_code == 200
    assert client.get(url, headers=_auth("7", "other")).status_code == 200
    for headers, code in [
        ({}, "ACCOUNT_ID_REQUIRED"),
        (_auth("42", "other"), "AUTHORIZATION_INVALID"),
        (_auth("42", "key:"), "AUTHORIZATION_INVALID"),
        ({"Authorization": "Basic !!!"}, "AUTHORIZATION_INVALID"),
    ]:
        response = client.get(url, headers=headers)
        assert (response.status_code, response.get_json()["code"]) == (401, code)


def test_the_pipeline_applies(make_settings: Callable[..., Settings], app: Flask) -> None:
    service = app.extensions["ipgeo.geo"]
    allowlisted = create_app(make_settings(IPGEO_ALLOWED="192.0.2.1"), service=service)
    refused = allowlisted.test_client().get("/geoip/v2.1/city/8.8.8.8", environ_base=CLIENT)
    assert refused.status_code == 403
    limited = create_app(make_settings(IPGEO_RATE_LIMIT="2/minute"), service=service)
    client = limited.test_client()
    statuses = [
        client.get("/geoip/v2.1/city/8.8.8.8", environ_base={"REMOTE_ADDR": "198.51.100.9"})
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[0].headers["RateLimit-Limit"] == "2"
    metrics = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert 'endpoint="/geoip/v2.1/city/<address>"' in metrics.get_data(as_text=True)
