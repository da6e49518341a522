"""Hot reload of database files in ``GeoService``: swaps, failures, SIGHUP, concurrency."""

from __future__ import annotations

import ipaddress
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ipgeo.dbupdate.install import install
from ipgeo.geo import GeoService
from tests.updateserver import write_versioned_mmdb

IP = ipaddress.ip_address("81.2.69.142")
DAY = 86400
BASE = 1_700_000_000


def _replace(target: Path, city: str, epoch: int) -> None:
    fresh = write_versioned_mmdb(target.with_name(f".{city}.tmp"), city, epoch)
    install(fresh, target)


@pytest.fixture()
def city_file(tmp_path: Path) -> Path:
    return write_versioned_mmdb(tmp_path / "city.mmdb", "Version 0", BASE)


def test_replaced_file_is_swapped_in(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=0.001)
    assert service.lookup_ip(IP).city == "Version 0"
    old_reader = service.city
    old_version = service.data_version
    assert old_version.startswith(f"GeoLite2-City:{BASE}:")
    assert service.generation == 1
    _replace(city_file, "Version 1", BASE + DAY)
    service.request_reload()
    result = service.lookup_ip(IP)
    assert result.city == "Version 1"
    assert service.generation == 2
    assert service.databases[0].build_epoch == BASE + DAY
    assert service.data_version != old_version
    # A lookup still holding the old readers finishes on them.
    record = old_reader.record(IP)
    assert record is not None
    assert record["city"]["names"]["en"] == "Version 0"
    # No change, no swap.
    service.request_reload()
    assert service.refresh() is False
    assert service.generation == 2


def test_checks_are_rate_limited(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=3600)
    _replace(city_file, "Version 1", BASE + DAY)
    assert service.lookup_ip(IP).city == "Version 0"  # not checked yet
    service.request_reload()
    assert service.lookup_ip(IP).city == "Version 1"


def test_zero_interval_turns_polling_off(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=0)
    _replace(city_file, "Version 1", BASE + DAY)
    assert service.refresh() is False
    assert service.lookup_ip(IP).city == "Version 0"


def test_broken_replacement_keeps_old_database(city_file: Path, testdata: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=0.001)
    broken = city_file.with_name(".broken")
    broken.write_bytes((testdata / "GeoIP2-City-Test.mmdb").read_bytes()[:5000])
    os.replace(broken, city_file)
    service.request_reload()
    assert service.refresh() is False
    assert service.lookup_ip(IP).city == "Version 0"
    assert service.generation == 1
    assert service.last_reload_error is not None
    assert "old database stays in service" in service.last_reload_error
    # The same broken file is not retried; a good one is picked up and clears the error.
    service.request_reload()
    assert service.refresh() is False
    _replace(city_file, "Version 2", BASE + 2 * DAY)
    service.request_reload()
    assert service.refresh() is True
    assert service.last_reload_error is None
    assert service.lookup_ip(IP).city == "Version 2"


def test_missing_file_keeps_old_database(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=0.001)
    city_file.unlink()
    service.request_reload()
    assert service.lookup_ip(IP).city == "Version 0"
    assert "missing" in (service.last_reload_error or "")


def test_sighup_requests_a_check(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=3600)
    previous = signal.getsignal(signal.SIGHUP)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert service.watch_sighup() is True
        _replace(city_file, "Version 1", BASE + DAY)
        assert service.lookup_ip(IP).city == "Version 0"
        os.kill(os.getpid(), signal.SIGHUP)
        assert service.lookup_ip(IP).city == "Version 1"
        # A handler someone else installed is never replaced.
        assert service.watch_sighup() is False
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_swaps_under_concurrent_lookups(city_file: Path) -> None:
    service = GeoService(city_db=city_file, reload_interval=0.001)
    versions = [
        write_versioned_mmdb(city_file.with_name(f".v{n}"), f"Version {n}", BASE + n * DAY)
        for n in range(1, 5)
    ]
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: set[str] = set()

    def hammer() -> None:
        while not stop.is_set():
            try:
                seen.add(service.lookup_ip(IP).city or "")
                time.sleep(0.0002)  # as requests arrive: a reload's thread gets the GIL too
            except BaseException as exc:  # any failure at all fails the test
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for number, fresh in enumerate(versions, start=1):
            install(fresh, city_file)
            # each version is served while the threads look up (opening one takes a while:
            # under threads hammering the GIL, seconds rather than its ~10 ms alone)
            deadline = time.monotonic() + 10
            while f"Version {number}" not in seen and time.monotonic() < deadline and not errors:
                stop.wait(0.005)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert errors == []
    service.request_reload()
    assert service.lookup_ip(IP).city == "Version 4"
    assert seen == {f"Version {number}" for number in range(5)}
