"""The bulk job pages in headless Chromium, against `ipgeo serve` with its embedded Redis and
the worker it starts: upload, live progress to 100 %, the map and summary, the CSV download."""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests import browser_harness
from tests.browser_harness import Visit, serve
from tests.fakedns import FakeDnsServer
from tests.test_jobs_acceptance import BAD_EVERY, write_log

browser = browser_harness.browser
visit = browser_harness.visit

LINES = 600_000  # a few seconds of work: the page must see the job between 0 and 100 %

# Records every value the job page's progress bar shows, across the reload into the result.
RECORD_PROGRESS = """
document.addEventListener("DOMContentLoaded", () => {
  const bar = document.getElementById("job-progress");
  if (!bar) { return; }
  const seen = JSON.parse(sessionStorage.getItem("progress") || "[]");
  const note = () => {
    seen.push(Number(bar.value));
    sessionStorage.setItem("progress", JSON.stringify(seen));
  };
  note();
  new MutationObserver(note).observe(bar, { attributes: true, attributeFilter: ["value"] });
});
"""


@pytest.fixture(scope="module")
def server(fake_dns: FakeDnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ipgeo serve` as `make run` runs it: embedded Redis and one job worker."""
    tmp = tmp_path_factory.mktemp("serve-jobs")
    env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
    env |= {
        "IPGEO_DNS_SERVERS": f"127.0.0.1:{fake_dns.port}",
        "IPGEO_TRUSTED_PROXIES": "127.0.0.1",
        "IPGEO_DATA_DIR": str(tmp / "data"),
        "IPGEO_JOB_PROGRESS_INTERVAL": "0.1",
    }
    yield from serve(env, tmp / "serve.log", ready_log=b"Worker", stop_timeout=20)


@pytest.fixture(scope="module")
def upload_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("upload") / "access.log"
    bad, _ = write_log(path, LINES, 8_000, seed=11)
    return path, bad


def _progress_seen(v: Visit) -> list[float]:
    try:
        values = v.page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    except PlaywrightError:
        return []
    return [float(value) for value in values]


def test_upload_progress_result_map_and_download(
    visit: Callable[..., Visit], upload_file: tuple[Path, int], tmp_path: Path
) -> None:
    path, bad = upload_file
    v = visit()
    v.page.add_init_script(RECORD_PROGRESS)
    v.page.goto(v.base + "/jobs")
    expect(v.page.get_by_role("heading", name="Geolocate a whole log or IP list")).to_be_visible()
    expect(v.page.get_by_label("Choose a file")).to_be_attached()
    v.screenshot("jobs-upload")
    v.page.set_input_files("#file", str(path))
    expect(v.page.locator("#file-name")).to_contain_text("access.log")
    v.page.get_by_role("radio", name="one per input line").check()
    v.page.get_by_role("button", name="Start job").click()
    v.page.wait_for_url("**/jobs/*")
    job_url = v.page.url
    expect(v.page.locator("#job-progress")).to_be_visible()
    shot = False
    deadline = time.monotonic() + 90
    while not v.page.locator("#summary").count():
        if not shot and 5 < (_progress_seen(v) or [0])[-1] < 90:
            v.screenshot("job-progress")
            shot = True
        assert time.monotonic() < deadline, "the job did not finish"
        assert "Something went wrong" not in v.page.title()
        time.sleep(0.05)
    seen = _progress_seen(v)
    assert seen[-1] == 100, seen
    assert any(0 < value < 100 for value in seen), seen  # it moved on its way
    assert seen == sorted(seen), seen
    expect(v.page.locator(".status-badge")).to_have_text("Finished")
    summary = v.page.locator("#summary").inner_text()
    assert f"{LINES:,}" in summary
    assert f"{bad:,}" in summary  # unparseable lines
    # The world map: every country drawn, the ones with lines shaded.
    v.page.wait_for_selector("#choropleth[data-ready=true]")
    v.page.wait_for_function("document.querySelectorAll('#choropleth path').length > 150")
    fills = v.page.evaluate(
        "[...document.querySelectorAll('#choropleth path')].map(p => p.getAttribute('fill'))"
    )
    assert len(set(fills)) >= 3, "countries are not shaded by their counts"
    assert "#f7f4ec" in fills  # countries without lines keep the land colour
    expect(v.page.locator("#choropleth .map-legend")).to_contain_text("≥ 20 %")
    top_countries = v.page.locator("#top-countries tbody tr")
    assert top_countries.count() == 10
    expect(v.page.locator("#top-cities")).to_be_visible()
    v.screenshot("job-result")
    with v.page.expect_download() as download_info:
        v.page.locator("#downloads a[data-format=csv]").click()
    download = download_info.value
    assert download.suggested_filename == "access-ipgeo.csv"
    target = tmp_path / "result.csv"
    download.save_as(target)
    with target.open(newline="") as handle:
        reader = csv.reader(handle)
        column = next(reader).index("line")
        numbers = [int(row[column]) for row in reader]  # only the numbers: the test stays small
    assert len(numbers) == LINES - bad
    assert numbers[:3] == [1, 2, 3]
    assert numbers[BAD_EVERY - 1] == BAD_EVERY + 1  # the bad line was skipped
    # The job is listed on the jobs page.
    v.page.goto(v.base + "/jobs")
    expect(v.page.locator("#recent-jobs")).to_contain_text("access.log")
    expect(v.page.locator("#recent-jobs .status-badge").first).to_have_text("Finished")
    # Jobs belong to the browser that made them (its HttpOnly cookie), not to its address:
    # another browser behind the same address does not list it and may not delete it.
    job_api = v.base + "/api/v1/jobs/" + job_url.rsplit("/", 1)[1]
    assert "ipgeo_jobs" not in v.page.evaluate("document.cookie")  # HttpOnly
    other = visit()
    other.page.goto(other.base + "/jobs")
    expect(other.page.locator("#recent-heading")).to_be_visible()
    expect(other.page.locator("#recent-jobs")).not_to_contain_text("access.log")
    other.expected_status_urls.add(job_api)
    delete = "url => fetch(url, {method: 'DELETE', credentials: 'same-origin'}).then(r => r.status)"
    assert other.page.evaluate(delete, job_api) == 403
    other.check_clean()
    assert v.page.evaluate(delete, job_api) == 204  # the owner's browser may
    v.check_clean()


def test_pasted_text_on_a_narrow_screen(visit: Callable[..., Visit]) -> None:
    v = visit(width=375)
    v.page.goto(v.base + "/jobs")
    v.page.get_by_label("…or paste addresses or log lines").fill(
        "8.8.8.8\n81.2.69.142\n2001:4860:4860::8888\n10.0.0.1\n"
    )
    v.page.get_by_role("radio", name="one per distinct IP").check()
    v.page.get_by_role("button", name="Start job").click()
    v.page.wait_for_url("**/jobs/*")
    v.page.wait_for_selector("#summary", timeout=30_000)
    expect(v.page.locator("#summary")).to_contain_text("Distinct IPs")
    v.page.wait_for_selector("#choropleth[data-ready=true]")
    v.no_horizontal_scroll()
    v.screenshot("job-result")
    v.check_clean()


def test_empty_submit_says_what_to_do(visit: Callable[..., Visit]) -> None:
    v = visit()
    v.page.goto(v.base + "/jobs")
    v.page.get_by_role("button", name="Start job").click()
    expect(v.page.locator("#upload-status")).to_contain_text("Choose or drop a file")
    assert v.page.url.endswith("/jobs")
    v.check_clean()
