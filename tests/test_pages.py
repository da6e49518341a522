"""The HTML pages through Flask's test client: statuses, HTML vs JSON errors, assets, headers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from html import unescape
from pathlib import Path

import pytest
from flask import Flask, render_template
from flask.testing import FlaskClient

from ipgeo.geo import LookupResult
from ipgeo.settings import Settings, SettingsError
from ipgeo.web import create_app

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/120", "Accept": "text/html"}
STATIC = Path(__file__).resolve().parent.parent / "src" / "ipgeo" / "web" / "static"


@pytest.fixture(scope="module")
def proxied_app(make_settings: Callable[..., Settings]) -> Flask:
    """The app behind a trusted proxy on 127.0.0.1 (the test client's address)."""
    return create_app(make_settings(IPGEO_TRUSTED_PROXIES="127.0.0.1"))


def page(client: FlaskClient, path: str, **headers: str) -> tuple[int, str, str]:
    response = client.get(path, headers=BROWSER | headers)
    return response.status_code, response.mimetype, response.get_data(as_text=True)


def test_home_for_browsers_shows_location_map_and_form(proxied_app: Flask) -> None:
    status, mimetype, html = page(
        proxied_app.test_client(), "/", **{"X-Forwarded-For": "81.2.69.142"}
    )
    assert (status, mimetype) == (200, "text/html")
    assert '<span class="ip" id="ip">81.2.69.142</span>' in html
    assert "United Kingdom" in html
    assert "\U0001f1ec\U0001f1e7" in html  # 🇬🇧
    assert 'id="map"' in html and 'data-lat="' in html
    assert 'data-radius-km="100"' in html
    assert 'data-copy="81.2.69.142"' in html
    assert '<label for="q">' in html and 'id="q" name="q"' in html
    assert 'class="visits"' not in html  # no visit counter configured
    assert "GeoLite2 data created by MaxMind" in html
    assert 'href="/docs"' in html


def test_home_for_loopback_explains_missing_location(client: FlaskClient) -> None:
    status, _, html = page(client, "/")
    assert status == 200
    assert '<span class="ip" id="ip">127.0.0.1</span>' in html
    assert "127.0.0.1 is a loopback address" in html
    assert 'id="map"' not in html
    assert "leaflet.js" not in html


@pytest.mark.parametrize(
    "agent", ["curl/8.5.0", "Wget/1.21.3", "HTTPie/3.2.2", "Mozilla/5.0 text-only"]
)
def test_home_for_command_line_clients_is_the_bare_ip(client: FlaskClient, agent: str) -> None:
    accept = "text/plain" if agent.startswith("Mozilla") else "*/*"
    response = client.get("/", headers={"User-Agent": agent, "Accept": accept})
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "127.0.0.1\n"
    assert response.mimetype == "text/plain"


def test_lookup_page_of_an_ip(client: FlaskClient) -> None:
    status, _, html = page(client, "/lookup/8.8.8.8")
    assert status == 200
    assert "United States" in html and "\U0001f1fa\U0001f1f8" in html
    assert 'id="map"' in html
    assert 'value="http://localhost/lookup/8.8.8.8"' in html  # permalink
    assert "curl http://localhost/api/v1/lookup/8.8.8.8" in html
    raw = re.search(r'<code id="raw-json">(.*?)</code>', html, re.S)
    assert raw is not None
    data = json.loads(unescape(raw.group(1)))
    api = client.get("/api/v1/lookup/8.8.8.8").get_json()
    assert {k: v for k, v in data.items() if k != "local_time"} == {
        k: v for k, v in api.items() if k != "local_time"
    }


def test_lookup_page_of_a_domain_lists_every_address(client: FlaskClient) -> None:
    status, _, html = page(client, "/lookup/example.test")
    assert status == 200
    assert 'href="/lookup/8.8.8.8"' in html
    assert 'href="/lookup/2001:4860:4860::8888"' in html
    assert "All addresses of example.test" in html


def test_form_target_redirects_to_the_permalink(client: FlaskClient) -> None:
    response = client.get("/lookup?q=+8.8.8.8+", headers=BROWSER)
    assert response.status_code == 303
    assert response.headers["Location"] == "/lookup/8.8.8.8"
    response = client.get("/lookup?q=2001:db8::1", headers=BROWSER)
    assert response.headers["Location"] == "/lookup/2001:db8::1"
    response = client.get("/lookup", query_string={"q": "a b/c?d#e"}, headers=BROWSER)
    assert response.headers["Location"] == "/lookup/a%20b%2Fc%3Fd%23e"
    status, _, html = page(client, response.headers["Location"])
    assert status == 400
    assert "&#39;a b/c?d#e&#39; is not" in html


@pytest.mark.parametrize(
    ("path", "status", "headline", "message"),
    [
        ("/lookup/not-an-ip!!", 400, "not an IP address or a domain name", "not-an-ip!!"),
        ("/lookup/10.1.2.3", 404, "has no public location", "a private address"),
        ("/lookup/127.0.0.1", 404, "has no public location", "a loopback address"),
        ("/lookup/nx.test", 404, "does not resolve", "nx.test"),
        ("/lookup?q=", 400, "Nothing to look up", "enter an IP address"),
        ("/lookup/", 400, "Nothing to look up", "enter an IP address"),
        ("/lookup/8.8.8.8?lang=!!", 400, "Unknown language", "lang must be"),
        ("/no/such/page", 404, "Page not found", "not found"),
    ],
)
def test_errors_are_friendly_pages_with_the_right_status(
    client: FlaskClient, path: str, status: int, headline: str, message: str
) -> None:
    code, mimetype, html = page(client, path)
    assert (code, mimetype) == (status, "text/html")
    assert headline in unescape(html)
    assert message.lower() in unescape(html).lower()
    assert 'id="q" name="q"' in html  # the form to try again
    assert "Traceback" not in html


def test_error_page_escapes_the_query(client: FlaskClient) -> None:
    status, _, html = page(client, "/lookup/<script>alert(1)</script>")
    assert status == 400
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_api_and_unknown_urls_keep_json_errors_for_programs(client: FlaskClient) -> None:
    response = client.get("/api/v1/lookup/not-an-ip!!", headers=BROWSER)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_query"
    response = client.get("/no/such/page", headers={"User-Agent": "curl/8.5.0", "Accept": "*/*"})
    assert response.status_code == 404
    assert response.get_json() == {
        "error": {"code": "not_found", "message": response.get_json()["error"]["message"]}
    }
    response = client.get("/api/v2/nothing", headers=BROWSER)
    assert (response.status_code, response.mimetype) == (404, "application/json")


def test_pages_send_a_strict_content_security_policy(client: FlaskClient) -> None:
    response = client.get("/lookup/8.8.8.8", headers=BROWSER)
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "https:" not in csp and "http:" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in client.get("/api/v1/lookup/8.8.8.8").headers


@pytest.mark.parametrize("path", ["/", "/lookup/8.8.8.8", "/lookup/x!", "/docs"])
def test_pages_load_every_asset_from_the_app_with_a_hash(proxied_app: Flask, path: str) -> None:
    client = proxied_app.test_client()
    _, _, html = page(client, path, **{"X-Forwarded-For": "81.2.69.142"})
    urls = re.findall(r'<(?:script|link|img)\b[^>]*?(?:src|href)="([^"]+)"', html)
    urls += re.findall(r'data-world="([^"]+)"', html)
    assert urls
    for url in map(unescape, urls):
        assert url.startswith("/static/"), url
        assert re.search(r"\?v=[0-9a-f]{10}$", url), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert "immutable" in response.headers["Cache-Control"]


def test_static_files_reference_no_other_host() -> None:
    for path in STATIC.rglob("*"):
        if path.suffix not in {".css", ".js", ".svg"} or path.name == "leaflet.js":
            continue
        text = path.read_text()
        for url in re.findall(r"url\(([^)]*)\)|@import\s+['\"]([^'\"]+)", text):
            assert "//" not in "".join(url), (path, url)
        assert 'fetch("http' not in text and "fetch('http" not in text


def test_vendored_assets_carry_their_licences() -> None:
    vendor = STATIC / "vendor"
    assert (vendor / "leaflet" / "LICENSE").read_text().startswith("BSD 2-Clause")
    assert (
        "ISC" in (vendor / "world-atlas" / "LICENSE").read_text()
        or "Permission" in (vendor / "world-atlas" / "LICENSE").read_text()
    )
    world = json.loads((vendor / "world-atlas" / "countries-110m.geojson").read_text())
    assert world["type"] == "FeatureCollection"
    assert len(world["features"]) > 170
    assert (vendor / "leaflet" / "images" / "marker-icon.png").is_file()


def test_docs_page_lists_every_endpoint(client: FlaskClient) -> None:
    status, _, html = page(client, "/docs")
    assert status == 200
    for path in client.get("/api/openapi.json").get_json()["paths"]:
        assert f"<code>{path}</code>" in html
    assert 'aria-current="page"' in html


def test_online_map_tiles_are_opt_in(make_settings: Callable[..., Settings]) -> None:
    app = create_app(
        make_settings(
            IPGEO_MAP_TILES="https://{s}.tile.example.org/{z}/{x}/{y}.png",
            IPGEO_MAP_ATTRIBUTION="© Example <maps>",
        )
    )
    response = app.test_client().get("/lookup/8.8.8.8", headers=BROWSER)
    html = response.get_data(as_text=True)
    assert 'data-tiles="https://{s}.tile.example.org/{z}/{x}/{y}.png"' in html
    assert 'data-tiles-attribution="© Example &lt;maps&gt;"' in html
    assert (
        "img-src 'self' data: https://*.tile.example.org;"
        in (response.headers["Content-Security-Policy"])
    )


@pytest.mark.parametrize(
    "value", ["tile.example.org/{z}/{x}/{y}.png", "https://t.example.org/{z}/{x}.png", "ftp://x/"]
)
def test_bad_tile_url_is_refused_at_start_up(value: str) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"IPGEO_MAP_TILES": value})
    assert info.value.variable == "IPGEO_MAP_TILES"


def test_home_shows_the_visit_count_only_when_there_is_one(proxied_app: Flask) -> None:
    with proxied_app.test_request_context("/", headers=BROWSER):
        result = LookupResult(ip="81.2.69.142", query="81.2.69.142", version=4)
        context = {"ip": "81.2.69.142", "result": result, "located": False, "reserved": None}
        context |= {"api_url": "http://localhost/api/v1/lookup/81.2.69.142"}
        assert 'id="visits"' not in render_template("home.html", visits=None, **context)
        html = render_template("home.html", visits=12345, **context)
        assert '<p class="visits" id="visits">12,345 visits so far</p>' in html
