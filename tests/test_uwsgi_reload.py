"""Acceptance: databases replaced 20 times by ``ipgeo db update`` under load through uWSGI.

uWSGI runs three worker processes (app loaded in the master, then forked) with threads;
Python client threads keep looking up while the updater installs 20 new builds fetched from
a local HTTP server. No request may fail, every new build date must be served, and the
multi-process ``/metrics`` must count exactly the requests that were made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ipgeo.dbupdate import UpdateConfig, run_update
from ipgeo.dbupdate.config import parse_url_source
from ipgeo.geo.models import DatabaseInfo
from tests.conftest import free_port
from tests.updateserver import UpdateServer, gzip_bytes, write_versioned_mmdb

BASE = 1_700_000_000
DAY = 86400
SWAPS = 20
LOOKUP = "/api/v1/lookup/81.2.69.142"


def build_date(epoch: int) -> str:
    info = DatabaseInfo("", "", epoch, 6, 0, 0, (), "")
    return info.build_date


@dataclass
class Uwsgi:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture()
def db_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "db"
    directory.mkdir()
    write_versioned_mmdb(directory / "city.mmdb", "Version 0", BASE)
    return directory


@pytest.fixture()
def uwsgi(db_dir: Path, tmp_path: Path) -> Iterator[Uwsgi]:
    port = free_port()
    log = tmp_path / "uwsgi.log"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("IPGEO_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env |= {
        "IPGEO_CITY_DB": str(db_dir / "city.mmdb"),
        "IPGEO_DB_RELOAD_INTERVAL": "0.2",
        "IPGEO_DATA_DIR": str(tmp_path / "data"),
        "IPGEO_LOG_FORMAT": "json",
    }
    command = [
        str(Path(sys.executable).parent / "uwsgi"),
        "--http11-socket", f"127.0.0.1:{port}",
        "--master",
        "--processes", "3",
        "--threads", "2",
        "--module", "ipgeo.wsgi:app",
        "--need-app",
        "--die-on-term",
        "--disable-logging",
        "--listen", "64",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Uwsgi(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{server.url}/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"uWSGI did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    yield server
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    shutil.rmtree(metrics_dir_of(process.pid), ignore_errors=True)


def metrics_dir_of(master_pid: int) -> Path:
    """The private multi-process metrics directory ipgeo.wsgi makes under uWSGI."""
    return Path(tempfile.gettempdir()) / f"ipgeo-metrics-{os.getuid()}-{master_pid}"


@dataclass
class Load:
    """Client threads looking up one address until stopped (bounded in count and time)."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: list[int] = field(default_factory=list)
    builds: list[str] = field(default_factory=list)
    cities: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        session = requests.Session()
        deadline = time.monotonic() + 120
        for _ in range(50_000):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            try:
                response = session.get(self.url + LOOKUP, timeout=10)
            except requests.RequestException as exc:
                with self.lock:
                    self.errors.append(repr(exc))
                continue
            with self.lock:
                self.statuses.append(response.status_code)
                self.builds.append(response.headers.get("X-Database-Build", ""))
                if response.status_code == 200:
                    self.cities.add(response.json()["city"])

    def latest_build(self) -> str:
        with self.lock:
            return self.builds[-1] if self.builds else ""


def lookup_requests_counted(url: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=10).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (
                sample.name == "ipgeo_http_requests_total"
                and sample.labels.get("endpoint") == "/api/v1/lookup/<path:query>"
                and sample.labels.get("status") == "200"
            ):
                total += sample.value
    return total


def test_twenty_swaps_under_load_through_uwsgi(uwsgi: Uwsgi, db_dir: Path, tmp_path: Path) -> None:
    versions = [
        gzip_bytes(
            write_versioned_mmdb(
                tmp_path / f"v{n}.mmdb", f"Version {n}", BASE + n * DAY
            ).read_bytes()
        )
        for n in range(1, SWAPS + 1)
    ]
    server = UpdateServer().start()
    load = Load(uwsgi.url)
    threads = [threading.Thread(target=load.run) for _ in range(4)]
    try:
        source = parse_url_source(f"city.mmdb={server.url}/dl/city.mmdb.gz")
        config = UpdateConfig(directory=db_dir, urls=(source,), retry_for=0)
        for thread in threads:
            thread.start()
        for n, body in enumerate(versions, start=1):
            server.state.files["/dl/city.mmdb.gz"] = body
            [result] = run_update(config)
            assert result.status == "updated", result.error
            expected = build_date(BASE + n * DAY)
            assert result.build_date == expected
            deadline = time.monotonic() + 10
            while load.latest_build() != expected:
                assert time.monotonic() < deadline, f"build {n} was never served"
                time.sleep(0.02)
        time.sleep(0.5)  # every worker has checked its files by now
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        server.stop()

    log = uwsgi.log.read_text()
    assert load.errors == [], load.errors[:5]
    assert len(load.statuses) > SWAPS * 5
    problems = [line for line in log.splitlines() if '"level":"error"' in line]
    assert set(load.statuses) == {200}, f"non-2xx responses during the swaps: {problems[:3]}"
    served = set(load.builds)
    assert {build_date(BASE + n * DAY) for n in range(1, SWAPS + 1)} <= served
    assert {f"Version {n}" for n in range(1, SWAPS + 1)} <= load.cities
    assert (db_dir / "city.mmdb.prev").is_file()
    # After the last swap every worker process serves the last build.
    session = requests.Session()
    final = [session.get(uwsgi.url + LOOKUP, timeout=10) for _ in range(30)]
    assert {r.headers["X-Database-Build"] for r in final} == {build_date(BASE + SWAPS * DAY)}
    assert {r.json()["city"] for r in final} == {f"Version {SWAPS}"}
    # /metrics aggregates all worker processes: it counted every lookup made.
    made = load.statuses.count(200) + len(final)
    assert lookup_requests_counted(uwsgi.url) == made
    metrics_dir = metrics_dir_of(uwsgi.process.pid)
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2, "only one worker answered"
    assert "Traceback" not in log
    assert '"databases reloaded (generation 2)' in log or "reloaded (generation 2)" in log
