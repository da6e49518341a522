"""The answer cache: parity with uncached lookups, a fresh clock, database reloads."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ipgeo.answers import AnswerCache
from ipgeo.dbupdate.install import install
from ipgeo.geo import GeoService
from ipgeo.settings import Settings
from ipgeo.web import create_app
from tests.test_parity import _random_public
from tests.updateserver import write_versioned_mmdb

BASE = 1_700_000_000


def _without_clock(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "local_time"}


def test_cached_answers_match_uncached_lookups(app: Flask) -> None:
    """The parity check through the API: every answer, first and cached, equals a fresh lookup."""
    service: GeoService = app.extensions["ipgeo.geo"]
    cache: AnswerCache = app.extensions["ipgeo.answers"]
    client = app.test_client()
    rng = random.Random(2024)
    found = 0
    for _ in range(1500):
        ip = str(_random_public(rng, rng.choice((4, 4, 6))))
        first = client.get(f"/api/v1/lookup/{ip}")
        second = client.get(f"/api/v1/lookup/{ip}")
        assert (first.status_code, first.data if first.status_code != 200 else b"") == (
            second.status_code,
            second.data if second.status_code != 200 else b"",
        )
        if first.status_code != 200:
            continue
        expected = service.lookup(ip).as_dict()
        for answer in (first.get_json(), second.get_json()):
            assert _without_clock(answer) == _without_clock(expected), ip
            assert (answer["local_time"] is None) == (expected["local_time"] is None)
        found += 1
    assert found > 100
    assert len(cache) >= found


@pytest.mark.parametrize("fields", ["", "?fields=ip,local_time", "?fields=utc_offset,local_time"])
def test_cached_local_time_is_never_stale(client: Any, fields: str) -> None:
    def local_time() -> datetime:
        response = client.get(f"/api/v1/lookup/81.2.69.142{fields}")
        assert response.status_code == 200
        return datetime.fromisoformat(response.get_json()["local_time"])

    first = local_time()
    time.sleep(1.1)
    second = local_time()  # from the cache
    assert second > first
    assert abs((second - datetime.now(UTC)).total_seconds()) < 1.5
    own = client.get("/json", environ_base={"REMOTE_ADDR": "81.2.69.142"}).get_json()
    assert abs((datetime.fromisoformat(own["local_time"]) - datetime.now(UTC)).total_seconds()) < 2


def test_other_formats_and_fields_are_cached_apart(app: Flask) -> None:
    service: GeoService = app.extensions["ipgeo.geo"]
    client = app.test_client()
    xml = client.get("/api/v1/lookup/81.2.69.142?format=xml")
    csv = client.get("/api/v1/lookup/81.2.69.142?format=csv&fields=ip,city")
    again = client.get("/api/v1/lookup/81.2.69.142?format=xml")
    assert xml.content_type == again.content_type == "application/xml; charset=utf-8"
    assert xml.data.startswith(b"<?xml")
    city = service.lookup("81.2.69.142").city
    assert csv.data.decode().splitlines() == ["ip,city", f"81.2.69.142,{city}"]
    english = client.get("/api/v1/lookup/81.2.69.142").get_json()
    german = client.get("/api/v1/lookup/81.2.69.142?lang=de").get_json()
    assert (english["country"], german["country"]) == ("United Kingdom", "Vereinigtes Königreich")


@pytest.mark.parametrize("path", ["/api/v1/lookup/81.2.69.142", "/json"])
def test_database_reload_is_reflected_immediately(
    make_settings: Callable[..., Settings], tmp_path: Path, path: str
) -> None:
    city_file = write_versioned_mmdb(tmp_path / "city.mmdb", "Version 0", BASE)
    app = create_app(make_settings(IPGEO_CITY_DB=str(city_file), IPGEO_DB_RELOAD_INTERVAL="0"))
    client = app.test_client()

    def city() -> str:
        response = client.get(path, environ_base={"REMOTE_ADDR": "81.2.69.142"})
        assert response.status_code == 200
        value: str = response.get_json()["city"]
        return value

    assert city() == city() == "Version 0"  # the second one is a cache hit
    assert len(app.extensions["ipgeo.answers"]) == 1
    fresh = write_versioned_mmdb(tmp_path / ".new.mmdb", "Version 1", BASE + 86400)
    install(fresh, city_file)
    app.extensions["ipgeo.geo"].request_reload()  # what SIGHUP or the interval check do
    assert city() == "Version 1"
    assert len(app.extensions["ipgeo.answers"]) == 1  # the old generation's answers are gone


def test_cache_can_be_turned_off(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(IPGEO_ANSWER_CACHE_SIZE="0"))
    assert "ipgeo.answers" not in app.extensions
    answer = app.test_client().get("/api/v1/lookup/81.2.69.142").get_json()
    assert answer == app.extensions["ipgeo.geo"].lookup("81.2.69.142").as_dict() | {
        "local_time": answer["local_time"]
    }


def test_lru_is_bounded(make_settings: Callable[..., Settings]) -> None:
    app = create_app(make_settings(IPGEO_ANSWER_CACHE_SIZE="3"))
    client = app.test_client()
    for ip in ("81.2.69.142", "8.8.8.8", "1.1.1.1", "2.125.160.216", "89.160.20.112"):
        assert client.get(f"/api/v1/lookup/{ip}").status_code == 200
    assert len(app.extensions["ipgeo.answers"]) == 3
