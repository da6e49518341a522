"""The pages in real headless Chromium (Debian's, driven by Playwright) against `ipgeo serve`."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests import browser_harness
from tests.browser_harness import SCREENSHOTS, VISITOR, Visit, serve
from tests.fakedns import FakeDnsServer

browser = browser_harness.browser
visit = browser_harness.visit


@pytest.fixture(scope="module")
def server(fake_dns: FakeDnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `ipgeo serve` (gunicorn) on a free port, trusting 127.0.0.1 as its proxy."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    env = os.environ | {
        "IPGEO_DNS_SERVERS": f"127.0.0.1:{fake_dns.port}",
        "IPGEO_DNS_TIMEOUT": "1",
        "IPGEO_TRUSTED_PROXIES": "127.0.0.1",
        "IPGEO_DATA_DIR": str(tmp_path_factory.mktemp("data")),
    }
    yield from serve(env, log_path)


def api_json(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=5) as response:
        return json.loads(response.read())


def test_home_shows_the_visitor_ip_location_and_map(visit: Callable[..., Visit]) -> None:
    v = visit()
    response = v.page.goto(v.base + "/")
    assert response is not None and response.status == 200
    assert v.page.locator("#ip").inner_text() == VISITOR
    place = v.page.locator(".hero .place").inner_text()
    assert "United Kingdom" in place and "\U0001f1ec\U0001f1e7" in place
    facts = v.page.locator(".facts").inner_text()
    assert "Europe/London" in facts and "± 100 km" in facts
    v.wait_for_map()
    assert v.page.locator("#map path.leaflet-interactive").count() == 1  # the accuracy circle
    assert any(url.split("?")[0].endswith("countries-110m.geojson") for url in v.requests)
    # The local time ticks in the browser.
    clock = v.page.locator("time.clock")
    first = clock.inner_text()
    v.page.wait_for_function(
        "(first) => document.querySelector('time.clock').textContent !== first", arg=first
    )
    assert clock.inner_text() != first
    # The copy button puts the IP on the clipboard.
    v.page.get_by_role("button", name="Copy your IP address").click()
    expect(v.page.locator(".hero .copy-label")).to_have_text("Copied")
    assert v.page.evaluate("navigator.clipboard.readText()") == VISITOR
    assert v.page.locator("footer").get_by_text("GeoLite2 data created by MaxMind").is_visible()
    assert v.page.locator("footer a[href='/docs']").is_visible()
    # `ipgeo serve` runs an embedded Redis by default, so the visit counter shows.
    expect(v.page.locator("#visits")).to_contain_text("visits so far")
    v.check_clean()


def test_home_from_loopback_says_there_is_no_location(visit: Callable[..., Visit]) -> None:
    v = visit(forwarded_for=None)
    v.page.goto(v.base + "/")
    assert v.page.locator("#ip").inner_text() == "127.0.0.1"
    assert "loopback address" in v.page.locator("#notice").inner_text()
    assert v.page.locator("#map").count() == 0
    v.check_clean()


def test_keyboard_lookup_of_an_ip(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.page.goto(v.base + "/")
    field_ = v.page.get_by_label("IP address or domain name")
    assert field_.count() == 1  # the input has a real label
    for _ in range(40):
        v.page.keyboard.press("Tab")
        if v.page.evaluate("document.activeElement.id") == "q":
            break
    else:
        pytest.fail("the lookup field cannot be reached with Tab")
    v.page.keyboard.type("8.8.8.8")
    with v.page.expect_navigation():
        v.page.keyboard.press("Enter")
    assert v.page.url == v.base + "/lookup/8.8.8.8"
    assert v.page.locator("#result-heading").inner_text() == "8.8.8.8"
    assert "United States" in v.page.locator(".facts").inner_text()
    v.wait_for_map()
    # The raw JSON is collapsed, opens from the keyboard and equals the API answer.
    raw = v.page.locator("#raw-json")
    assert not raw.is_visible()
    v.page.locator("details.raw-json summary").focus()
    v.page.keyboard.press("Enter")
    assert raw.is_visible()
    shown = json.loads(raw.inner_text())
    api = api_json(v.base, "/api/v1/lookup/8.8.8.8")
    assert shown.keys() == api.keys()
    assert {k: shown[k] for k in ("country_iso", "latitude", "longitude", "network")} == {
        k: api[k] for k in ("country_iso", "latitude", "longitude", "network")
    }
    assert v.page.locator("#permalink").input_value() == v.base + "/lookup/8.8.8.8"
    assert f"curl {v.base}/api/v1/lookup/8.8.8.8" in v.page.locator("pre.code").first.inner_text()
    v.check_clean()


def test_lookup_of_a_domain_shows_every_address(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.page.goto(v.base + "/")
    v.page.get_by_label("IP address or domain name").fill("example.test")
    with v.page.expect_navigation():
        v.page.get_by_role("button", name="Look up").click()
    assert v.page.url == v.base + "/lookup/example.test"
    assert v.page.locator("#domain").inner_text() == "example.test"
    assert v.page.locator("#result-heading").inner_text() == "8.8.8.8"
    addresses = v.page.locator("#addresses li a").all_inner_texts()
    assert addresses == ["8.8.8.8", "2001:4860:4860::8888"]
    assert "United States" in v.page.locator(".facts").inner_text()
    v.wait_for_map()
    v.check_clean()


def test_invalid_query_shows_a_friendly_error(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.page.goto(v.base + "/")
    v.expected_status_urls.add(v.base + "/lookup/not-an-ip!!")
    v.page.get_by_label("IP address or domain name").fill("not-an-ip!!")
    with v.page.expect_response(lambda r: "/lookup/not-an-ip" in r.url) as info:
        v.page.keyboard.press("Enter")
    assert info.value.status == 400
    v.page.wait_for_load_state()
    assert "not an IP address" in v.page.locator("#error-heading").inner_text()
    assert "'not-an-ip!!'" in v.page.locator("#error-message").inner_text()
    assert v.page.get_by_label("IP address or domain name").input_value() == "not-an-ip!!"
    v.check_clean()


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/lookup/10.1.2.3", 404, "a private address"),
        ("/lookup/nx.test", 404, "does not resolve"),
        ("/no/such/page", 404, "Page not found"),
    ],
)
def test_other_errors_are_pages(
    visit: Callable[..., Visit], path: str, status: int, text: str
) -> None:
    v = visit()
    v.expected_status_urls.add(v.base + path)
    response = v.page.goto(v.base + path)
    assert response is not None and response.status == status
    assert text in v.page.locator(".error-card").inner_text()
    v.check_clean()


@pytest.mark.parametrize("width", [1280, 375])
def test_screenshots_and_no_horizontal_scroll(visit: Callable[..., Visit], width: int) -> None:
    v = visit(width=width, frozen=True)
    v.page.goto(v.base + "/")
    v.wait_for_map()
    v.no_horizontal_scroll()
    v.screenshot("home")
    v.page.goto(v.base + "/lookup/8.8.8.8")
    v.wait_for_map()
    v.page.locator("details.raw-json summary").click()
    v.no_horizontal_scroll()  # the raw JSON scrolls inside its own box
    v.page.locator("details.raw-json summary").click()
    v.screenshot("lookup")
    v.expected_status_urls.add(v.base + "/lookup/not-an-ip!!")
    v.page.goto(v.base + "/lookup/not-an-ip!!")
    v.no_horizontal_scroll()
    v.screenshot("error")
    v.page.goto(v.base + "/docs")
    v.no_horizontal_scroll()
    v.check_clean()
    for name in ("home", "lookup", "error"):
        assert (SCREENSHOTS / f"{name}-{width}.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "path", ["/lookup/2001:4860:4860::8888", "/lookup/example.test", "/docs", "/no/such/page"]
)
def test_narrow_screens_never_scroll_sideways(visit: Callable[..., Visit], path: str) -> None:
    v = visit(width=375)
    v.expected_status_urls.add(v.base + path)
    v.page.goto(v.base + path)
    v.no_horizontal_scroll()
    v.check_clean()


CONTRAST_JS = """
() => {
  const parse = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = parse(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const worst = [];
  let checked = 0;
  const sel = 'p, dt, dd, label, a, button, h1, h2, .eyebrow, .sub, .badge, code, summary, li, td';
  for (const el of document.querySelectorAll(sel)) {
    if (!el.offsetParent || !el.textContent.trim() || el.closest('.leaflet-container')) continue;
    checked += 1;
    const fg = parse(getComputedStyle(el).color).slice(0, 3);
    const [a, b] = [lum(fg), lum(background(el))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) worst.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return { checked, worst };
}
"""


UNLABELLED_JS = """
() => [...document.querySelectorAll('input, select, textarea, button')]
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                  && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))
"""


@pytest.mark.parametrize("path", ["/", "/lookup/8.8.8.8", "/lookup/not-an-ip!!", "/docs"])
def test_labels_and_text_contrast_meet_wcag_aa(visit: Callable[..., Visit], path: str) -> None:
    v = visit()
    v.expected_status_urls.add(v.base + path)
    v.page.goto(v.base + path)
    assert v.page.evaluate(UNLABELLED_JS) == []
    result = v.page.evaluate(CONTRAST_JS)
    assert result["checked"] > 10
    assert result["worst"] == []
    v.check_clean()
