"""The PostGIS time-zone backend against a private PostgreSQL 15 + PostGIS server."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import psycopg
import pytest
from click.testing import CliRunner
from pytest_postgresql.executors import PostgreSQLExecutor
from timezonefinder import TimezoneFinder

from ipgeo.cli import main
from ipgeo.geo.postgis_locator import PostgisTimezoneLocator
from ipgeo.geo.postgis_schema import apply_migrations, migrations
from ipgeo.geo.timezone_loader import LoadSummary, load_timezones
from ipgeo.geo.timezone_polygons import TimezonefinderSource, is_ocean_zone
from ipgeo.geo.timezones import EmbeddedTimezoneLocator
from ipgeo.settings import Settings
from ipgeo.web import create_app
from tests.conftest import free_port
from tests.mmdbgen import city_record, write_mmdb
from tests.pgserver import admin_url, database_url, postgis_server, start

BERLIN = (52.520, 13.405)
OFF_CHILE = (-33.05, -72.20)  # Pacific, ~50 km off Valparaíso: beyond Chile's 12 nm waters
SMALL_ZONES = ("Europe/Berlin", "Europe/Paris", "America/Santiago", "Europe/Zurich")


@pytest.fixture(scope="module")
def finder() -> TimezoneFinder:
    return TimezoneFinder()


@pytest.fixture(scope="module")
def pg_loaded() -> Iterator[tuple[str, LoadSummary]]:
    """A server with every timezonefinder polygon loaded: its URL and the load summary."""
    with postgis_server() as executor:
        url = database_url(executor)
        yield url, load_timezones(url, TimezonefinderSource())


@pytest.fixture(scope="module")
def pg(pg_loaded: tuple[str, LoadSummary]) -> str:
    return pg_loaded[0]


@pytest.fixture()
def locator(pg: str) -> Iterator[PostgisTimezoneLocator]:
    loc = PostgisTimezoneLocator(pg, nearest_km=30)
    yield loc
    loc.close()


def small_geojson(finder: TimezoneFinder, path: Path) -> Path:
    """A timezone-boundary-builder-style GeoJSON of a few zones (their real polygons)."""
    features = [
        {
            "type": "Feature",
            "properties": {"tzid": zone},
            "geometry": {
                "type": "MultiPolygon",
                "coordinates": finder.get_geometry(tz_name=zone, coords_as_pairs=True),
            },
        }
        for zone in SMALL_ZONES
    ]
    path.write_bytes(orjson.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.fixture(scope="module")
def small_pg(
    finder: TimezoneFinder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[PostgreSQLExecutor, Path]]:
    """A second server (stopped and restarted by tests) loaded from a GeoJSON file by the CLI."""
    geojson = small_geojson(finder, tmp_path_factory.mktemp("geojson") / "zones.geojson")
    with postgis_server() as executor:
        result = CliRunner().invoke(
            main,
            ["db", "load-timezones", "--from", str(geojson)],
            env={"IPGEO_DATABASE_URL": database_url(executor)},
        )
        assert result.exit_code == 0, result.output
        assert "Loaded 4 zones" in result.output
        yield executor, geojson


# -- schema and loader -----------------------------------------------------------------------


def test_migrations_are_versioned_and_idempotent(pg: str) -> None:
    with psycopg.connect(pg, autocommit=True) as conn:
        assert apply_migrations(conn) == []  # the loader applied them all already
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY 1").fetchall()
        assert rows == [(m.version, m.name) for m in migrations()]
        assert [m.version for m in migrations()] == [1, 2]
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'timezone_polygons'"
        ).fetchall()
        assert indexes == [("timezone_polygons_geom_idx",)]
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'timezone_polygons%'"
        ).fetchone()
        assert tables == (1,)  # no leftover "next" table after the swap


def test_loaded_polygons_cover_every_land_zone(
    pg_loaded: tuple[str, LoadSummary], finder: TimezoneFinder, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, summary = pg_loaded
    with capsys.disabled():
        print(
            f"\n[postgis] loaded {summary.zones} zones, {summary.polygons} polygons "
            f"({summary.pieces} pieces) in {summary.seconds:.1f} s"
        )
    with psycopg.connect(pg) as conn:
        zones = {row[0] for row in conn.execute("SELECT DISTINCT tzid FROM timezone_polygons")}
        biggest = conn.execute("SELECT max(ST_NPoints(geom)) FROM timezone_polygons").fetchone()
    land = {zone for zone in finder.timezone_names if not is_ocean_zone(zone)}
    assert zones == land
    assert summary.zones == len(land) and summary.pieces > summary.polygons
    assert biggest is not None and biggest[0] <= 300  # subdivided into small pieces


# -- lookups -----------------------------------------------------------------------------------


def test_known_points(locator: PostgisTimezoneLocator) -> None:
    assert locator.locate(*BERLIN) == "Europe/Berlin"
    assert locator.locate(40.7128, -74.0060) == "America/New_York"
    assert locator.locate(-33.8688, 151.2093) == "Australia/Sydney"
    assert locator.locate(91.0, 0.0) is None
    assert locator.fallbacks == 0 and locator.lookups == 3  # the invalid point never queries


def test_point_off_chile_takes_the_nearest_zone(
    locator: PostgisTimezoneLocator, pg: str, finder: TimezoneFinder
) -> None:
    # Outside every land polygon: the embedded finder says open ocean (UTC-5) ...
    assert finder.timezone_at(lat=OFF_CHILE[0], lng=OFF_CHILE[1]) == "Etc/GMT+5"
    # ... PostGIS finds Chile's polygon within the configured distance.
    assert locator.locate(*OFF_CHILE) == "America/Santiago"
    assert locator.fallbacks == 0
    strict = PostgisTimezoneLocator(pg, nearest_km=0)
    try:
        assert strict.locate(*OFF_CHILE) == "Etc/GMT+5"
        assert strict.locate(0.0, -140.0) == "Etc/GMT+9"  # mid-Pacific: nautical zone
    finally:
        strict.close()


def _uniform_point(rnd: random.Random) -> tuple[float, float]:
    return math.degrees(math.asin(rnd.uniform(-1, 1))), rnd.uniform(-180, 180)


def _land_points(
    finder: TimezoneFinder, count: int, rnd: random.Random
) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    while len(points) < count:
        lat, lng = _uniform_point(rnd)
        if not is_ocean_zone(finder.timezone_at(lat=lat, lng=lng) or "Etc/GMT"):
            points.append((lat, lng))
    return points


def _offset(lat: float, lng: float, km: float, bearing: float) -> tuple[float, float]:
    dlat = km / 111.2 * math.cos(bearing)
    dlng = km / (111.2 * max(math.cos(math.radians(lat)), 0.01)) * math.sin(bearing)
    return max(-90.0, min(90.0, lat + dlat)), (lng + dlng + 180.0) % 360.0 - 180.0


def _coastal_points(
    finder: TimezoneFinder, count: int, rnd: random.Random, offshore: bool
) -> list[tuple[float, float, str]]:
    """Points within 5 km of a coast, on land (or offshore), with the zone of the coast."""
    boundaries = [b for b in range(finder.nr_of_polygons) if not is_ocean_zone(_zone_of(finder, b))]
    points: list[tuple[float, float, str]] = []
    while len(points) < count:
        boundary = rnd.choice(boundaries)
        coords = finder.coords_of(boundary)
        vertex = rnd.randrange(coords.shape[1])
        lng, lat = float(coords[0, vertex]) * 1e-7, float(coords[1, vertex]) * 1e-7
        near = [_offset(lat, lng, 6.0, k * math.pi / 4) for k in range(8)]
        if not any(is_ocean_zone(finder.timezone_at(lat=a, lng=b) or "") for a, b in near):
            continue  # an inland border, not a coast
        plat, plng = _offset(lat, lng, rnd.uniform(0.05, 5.0), rnd.uniform(0, 2 * math.pi))
        at_sea = is_ocean_zone(finder.timezone_at(lat=plat, lng=plng) or "Etc/GMT")
        if at_sea == offshore:
            points.append((plat, plng, _zone_of(finder, boundary)))
    return points


def _zone_of(finder: TimezoneFinder, boundary: int) -> str:
    return str(finder.timezone_names[int(finder.zone_ids[boundary])])


def _compare(
    name: str,
    points: list[tuple[float, float]],
    expected: list[str | None],
    locator: PostgisTimezoneLocator,
    capsys: pytest.CaptureFixture[str],
    expected_by: str = "embedded",
) -> float:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda p: locator.locate(*p), points))
    wrong = [(p, e, a) for p, e, a in zip(points, expected, answers, strict=True) if e != a]
    agreement = 1 - len(wrong) / len(points)
    with capsys.disabled():
        print(f"\n[parity] {name}: {len(points)} points, agreement {agreement:.4%}")
        for (lat, lng), want, got in wrong:
            print(f"[parity]   {lat:.5f},{lng:.5f}: {expected_by} {want}, postgis {got}")
    return agreement


def test_parity_with_the_embedded_finder(
    locator: PostgisTimezoneLocator, finder: TimezoneFinder, capsys: pytest.CaptureFixture[str]
) -> None:
    rnd = random.Random(20261121)
    embedded = EmbeddedTimezoneLocator()
    land = _land_points(finder, 20_000, rnd)
    coastal = [(lat, lng) for lat, lng, _ in _coastal_points(finder, 2_000, rnd, offshore=False)]
    anywhere = [_uniform_point(rnd) for _ in range(2_000)]
    results = {
        name: _compare(name, points, [embedded.locate(*p) for p in points], locator, capsys)
        for name, points in (("land", land), ("coastal", coastal))
    }
    # At sea too, once the coastal rule (a deliberate difference) is switched off.
    strict = PostgisTimezoneLocator(locator.url, nearest_km=0)
    try:
        expected = [embedded.locate(*p) for p in anywhere]
        results["anywhere"] = _compare("anywhere, land or sea", anywhere, expected, strict, capsys)
    finally:
        strict.close()
    assert locator.fallbacks == 0 and strict.fallbacks == 0
    assert results["land"] >= 0.999
    assert results["coastal"] >= 0.999
    assert results["anywhere"] >= 0.999


def test_offshore_points_take_the_zone_of_the_coast(
    locator: PostgisTimezoneLocator, finder: TimezoneFinder, capsys: pytest.CaptureFixture[str]
) -> None:
    rnd = random.Random(7)
    offshore = _coastal_points(finder, 300, rnd, offshore=True)
    points = [(lat, lng) for lat, lng, _ in offshore]
    agreement = _compare(
        "offshore (zone of the nearest coast)",
        points,
        [z for *_, z in offshore],
        locator,
        capsys,
        expected_by="coast vertex of",
    )
    assert locator.fallbacks == 0
    # Within 5 km of a vertex of that zone; near a border another zone's coast may be nearer.
    assert agreement >= 0.95


# -- fallback, recovery, reloading -------------------------------------------------------------


def _wait_for(condition: object, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def test_fallback_when_the_server_stops_and_recovery(
    small_pg: tuple[PostgreSQLExecutor, Path],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    executor, _ = small_pg
    url = database_url(executor)
    # A City database whose record has coordinates (just off Chile) but no time zone.
    mmdb = write_mmdb(
        tmp_path / "city.mmdb",
        {"81.2.69.0/24": city_record("Chile", "CL", "Nowhere", *OFF_CHILE)},
    )
    settings = Settings.from_env({"IPGEO_DATABASE_URL": url, "IPGEO_CITY_DB": str(mmdb)})
    app = create_app(settings)
    client = app.test_client()
    loc = app.extensions["ipgeo.geo"].timezones
    assert isinstance(loc, PostgisTimezoneLocator)
    loc.retry_interval = 0.2
    try:
        ready = client.get("/readyz").get_json()
        assert ready["status"] == "ok" and ready["checks"]["postgres"]["status"] == "ok"
        answer = client.get("/api/v1/lookup/81.2.69.7").get_json()
        assert answer["time_zone"] == "America/Santiago"
        assert answer["time_zone_source"] == "polygon"
        assert loc.lookups == 1 and loc.fallbacks == 0

        executor.stop()  # mid-test: every lookup still answers, from the embedded finder
        with caplog.at_level("WARNING", logger="ipgeo.geo.postgis"):
            for _ in range(20):
                assert loc.locate(*BERLIN) == "Europe/Berlin"
        assert loc.fallbacks == 20 and not loc.available
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per interval, not once per lookup
        response = client.get("/readyz")
        assert response.status_code == 200  # degraded, never 503, for the time-zone backend
        ready = response.get_json()
        assert ready["status"] == "degraded"
        assert ready["checks"]["postgres"]["status"] == "degraded"
        assert ready["checks"]["postgres"]["fallback"] == "embedded"
        answer = client.get("/api/v1/lookup/81.2.69.7").get_json()
        assert answer["time_zone"] == "Etc/GMT+5"  # the embedded finder's answer there

        start(executor)  # recovery needs no restart of ipgeo
        assert _wait_for(lambda: loc.locate(*BERLIN) == "Europe/Berlin" and loc.available)
        before = loc.fallbacks
        assert loc.locate(*OFF_CHILE) == "America/Santiago"
        assert loc.fallbacks == before
        assert client.get("/readyz").get_json()["checks"]["postgres"]["status"] == "ok"
    finally:
        if not executor.running():
            start(executor)
        app.extensions["ipgeo.geo"].close()


def test_reloading_while_lookups_run_fails_no_lookup(
    small_pg: tuple[PostgreSQLExecutor, Path],
) -> None:
    executor, geojson = small_pg
    url = database_url(executor)
    loc = PostgisTimezoneLocator(url, nearest_km=30, timeout=5.0)
    probes = [
        (BERLIN, "Europe/Berlin"),
        ((48.8566, 2.3522), "Europe/Paris"),
        (OFF_CHILE, "America/Santiago"),
        ((47.3769, 8.5417), "Europe/Zurich"),
    ]
    stop = threading.Event()
    wrong: list[object] = []
    count = [0]
    lock = threading.Lock()

    def hammer() -> None:
        while not stop.is_set():
            for point, zone in probes:
                got = loc.locate(*point)
                with lock:
                    count[0] += 1
                if got != zone:
                    wrong.append((point, zone, got))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(3):
            before = count[0]
            result = CliRunner().invoke(
                main, ["db", "load-timezones", "--from", str(geojson), "--database-url", url]
            )
            assert result.exit_code == 0, result.output
            assert count[0] > before  # lookups really ran during the load
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        loc.close()
    assert wrong == []
    assert loc.fallbacks == 0  # every lookup answered by PostgreSQL, none failed over
    assert loc.lookups == count[0]


def test_bad_source_changes_nothing(
    small_pg: tuple[PostgreSQLExecutor, Path], tmp_path: Path
) -> None:
    executor, _ = small_pg
    url = database_url(executor)
    bad = tmp_path / "bad.geojson"
    bad.write_text('{"type": "FeatureCollection", "features": [{"properties": {}}]}')
    for path, message in ((bad, "no 'tzid'"), (tmp_path / "missing.json", "No such file")):
        result = CliRunner().invoke(
            main, ["db", "load-timezones", "--from", str(path), "--database-url", url]
        )
        assert result.exit_code == 1 and message in result.output, result.output
    loc = PostgisTimezoneLocator(url)
    try:
        assert loc.locate(*BERLIN) == "Europe/Berlin" and loc.fallbacks == 0
    finally:
        loc.close()


def test_unreachable_database_at_start() -> None:
    loc = PostgisTimezoneLocator(f"postgresql://postgres@127.0.0.1:{free_port()}/none")
    try:
        assert loc.locate(*BERLIN) == "Europe/Berlin"
        assert loc.fallbacks == 1
        assert loc.health()["status"] == "degraded"
    finally:
        loc.close()


def test_database_without_polygons_falls_back_and_says_why(
    small_pg: tuple[PostgreSQLExecutor, Path],
) -> None:
    executor, _ = small_pg
    with psycopg.connect(admin_url(executor), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS empty")
        conn.execute("CREATE DATABASE empty")
    loc = PostgisTimezoneLocator(admin_url(executor).rsplit("/", 1)[0] + "/empty")
    try:
        assert loc.locate(*BERLIN) == "Europe/Berlin"
        assert loc.fallbacks == 1
        health = loc.health()
        assert health["status"] == "degraded"
        assert "ipgeo db load-timezones" in health["error"]
    finally:
        loc.close()
