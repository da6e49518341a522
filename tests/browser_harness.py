"""The shared Playwright harness of the browser tests: Debian's Chromium, a `Visit` tab that
records console errors and aborts requests to other hosts, and a started `ipgeo serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    sync_playwright,
)

from tests.conftest import ROOT, free_port

CHROMIUM = os.environ.get("IPGEO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(os.environ.get("IPGEO_SCREENSHOT_DIR", ROOT / "docs" / "screenshots"))
VISITOR = "81.2.69.142"  # a public address the home page is told about via X-Forwarded-For
# Screenshots are taken at a fixed instant so the live clock does not change them.
FROZEN_TIME = datetime(2026, 6, 1, 10, 30, 0)


def serve(
    env: dict[str, str], log_path: Path, ready_log: bytes = b"", stop_timeout: float = 10
) -> Iterator[str]:
    """Run `ipgeo serve` (one worker) on a free port until resumed; yield its base URL.

    It counts as started once /healthz answers and, if given, ``ready_log`` is in its log.
    """
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ipgeo", "serve", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as response:
                if response.status == 200 and ready_log in log_path.read_bytes():
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"ipgeo serve did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    yield base
    process.terminate()
    try:
        process.wait(timeout=stop_timeout)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    with sync_playwright() as playwright:
        pw: Playwright = playwright
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@dataclass
class Visit:
    """A browser tab on the app that records console errors and every request it makes."""

    page: Page
    context: BrowserContext
    base: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    expected_status_urls: set[str] = field(default_factory=set)

    def check_clean(self) -> None:
        """No console error, no uncaught exception, no request to another host."""
        assert self.foreign == [], f"requests to other hosts: {self.foreign}"
        assert self.errors == [], f"console errors: {self.errors}"

    def wait_for_map(self) -> None:
        """Wait until the marker, the accuracy circle and the world outline are drawn."""
        self.page.wait_for_selector("#map[data-ready=true] .leaflet-marker-icon", state="visible")
        self.page.wait_for_function(
            "document.querySelectorAll('#map .leaflet-outline-pane path').length > 100"
        )

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        width = self.page.viewport_size["width"] if self.page.viewport_size else 0
        self.page.screenshot(path=SCREENSHOTS / f"{name}-{width}.png", full_page=True)

    def no_horizontal_scroll(self) -> None:
        overflow = self.page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"page is {overflow}px wider than the viewport"


@pytest.fixture()
def visit(browser: Browser, server: str) -> Iterator[Callable[..., Visit]]:
    visits: list[Visit] = []

    def open_visit(
        width: int = 1280, forwarded_for: str | None = VISITOR, frozen: bool = False
    ) -> Visit:
        context = browser.new_context(
            viewport={"width": width, "height": 800},
            extra_http_headers={"X-Forwarded-For": forwarded_for} if forwarded_for else {},
            permissions=["clipboard-read", "clipboard-write"],
            locale="en-GB",
            reduced_motion="reduce" if frozen else "no-preference",
        )
        page = context.new_page()
        if frozen:
            page.clock.set_fixed_time(FROZEN_TIME)
        item = Visit(page, context, server)
        app = urlsplit(server).netloc

        def route(route: Route, request: Request) -> None:
            item.requests.append(request.url)
            if urlsplit(request.url).netloc != app:
                item.foreign.append(request.url)
                route.abort()
            else:
                route.continue_()

        def console(message: ConsoleMessage) -> None:
            if message.type != "error":
                return
            url = message.location.get("url", "")
            if "Failed to load resource" in message.text and unquote(url) in {
                unquote(expected) for expected in item.expected_status_urls
            }:
                return  # the browser reports an error page's own 4xx status
            item.errors.append(f"{message.text} ({url})")

        context.route("**/*", route)
        page.on("console", console)
        page.on("pageerror", lambda exc: item.errors.append(f"uncaught: {exc}"))
        visits.append(item)
        return item

    yield open_visit
    for item in visits:
        item.context.close()
