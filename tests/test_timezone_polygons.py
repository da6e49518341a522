"""Polygon sources and subdivision for the PostGIS loader (no server needed)."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest
import shapely
from timezonefinder import TimezoneFinder

from ipgeo.geo.polygon_pieces import make_polygon, subdivide
from ipgeo.geo.timezone_polygons import (
    GeoJsonSource,
    PolygonSourceError,
    TimezonefinderSource,
    is_ocean_zone,
    nautical_zone,
)
from ipgeo.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("longitude", "zone"),
    [
        (0.0, "Etc/GMT"),
        (7.4, "Etc/GMT"),
        (7.6, "Etc/GMT-1"),
        (-75.0, "Etc/GMT+5"),
        (-140.0, "Etc/GMT+9"),
        (179.9, "Etc/GMT-12"),
        (-179.9, "Etc/GMT+12"),
        (180.0, "Etc/GMT-12"),
    ],
)
def test_nautical_zone(longitude: float, zone: str) -> None:
    assert nautical_zone(longitude) == zone
    assert is_ocean_zone(zone)


def test_nautical_zone_matches_the_embedded_ocean_polygons() -> None:
    finder = TimezoneFinder()
    rnd = random.Random(3)
    checked = 0
    while checked < 2000:
        lat, lng = rnd.uniform(-60, 60), rnd.uniform(-180, 180)
        zone = finder.timezone_at(lat=lat, lng=lng)
        if zone and is_ocean_zone(zone):
            assert nautical_zone(lng) == zone, (lat, lng)
            checked += 1


def test_fast_polygon_access_equals_the_documented_accessor() -> None:
    source = TimezonefinderSource()
    finder = source._finder
    boundaries = [0, 100, 597, 864, len(source) - 1]  # includes polygons with holes
    for boundary in boundaries:
        fast = source._rings(boundary)
        documented = finder.get_polygon(boundary, coords_as_pairs=False)
        assert len(fast) == len(documented)
        for ring, (lngs, lats) in zip(fast, documented, strict=True):
            np.testing.assert_allclose(ring[:, 0], lngs, atol=1e-9)
            np.testing.assert_allclose(ring[:, 1], lats, atol=1e-9)


def test_subdivided_pieces_cover_exactly_the_polygon() -> None:
    finder = TimezoneFinder()
    rings = [
        np.asarray(ring, dtype=np.float64)
        for ring in finder.get_geometry(tz_name="Europe/Berlin", coords_as_pairs=True)[0]
    ]
    polygon = make_polygon(rings)
    assert shapely.get_num_coordinates(polygon[0]) > 100_000
    pieces, owners = subdivide(polygon, 256)
    assert (shapely.get_num_coordinates(pieces) <= 256).all()
    assert set(owners.tolist()) == {0}
    area = shapely.area(polygon[0])
    assert abs(shapely.area(pieces).sum() - area) < area * 1e-9
    rnd = random.Random(5)
    xmin, ymin, xmax, ymax = shapely.bounds(polygon[0])
    points = shapely.points(
        [(rnd.uniform(xmin, xmax), rnd.uniform(ymin, ymax)) for _ in range(2000)]
    )
    inside = shapely.contains(polygon[0], points)
    in_piece = np.zeros(len(points), dtype=bool)
    for piece in pieces:
        in_piece |= shapely.contains(piece, points)
    assert (inside == in_piece).all()


def _collection(features: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"type": "FeatureCollection", "features": features})


SQUARE = [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]


def test_geojson_source_reads_json_and_zip(tmp_path: Path) -> None:
    document = _collection(
        [
            {
                "properties": {"tzid": "Test/A"},
                "geometry": {"type": "Polygon", "coordinates": SQUARE},
            },
            {
                "properties": {"TZID": "Test/B"},
                "geometry": {"type": "MultiPolygon", "coordinates": [SQUARE, SQUARE]},
            },
        ]
    )
    plain = tmp_path / "zones.geojson"
    plain.write_bytes(document)
    packed = tmp_path / "zones.geojson.zip"
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("combined.json", document)
    for path in (plain, packed):
        source = GeoJsonSource(path)
        polygons = list(source.polygons())
        assert len(source) == 3
        assert [polygon.tzid for polygon in polygons] == ["Test/A", "Test/B", "Test/B"]
        assert polygons[0].rings[0].shape == (5, 2)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not JSON"),
        (b'{"type": "Feature"}', "not a GeoJSON FeatureCollection"),
        (b'{"type": "FeatureCollection", "features": []}', "no features"),
        (
            _collection(
                [{"properties": {}, "geometry": {"type": "Polygon", "coordinates": SQUARE}}]
            ),
            "no 'tzid'",
        ),
        (
            _collection(
                [
                    {
                        "properties": {"tzid": "X/Y"},
                        "geometry": {"type": "Point", "coordinates": [0, 0]},
                    }
                ]
            ),
            "Polygon or MultiPolygon",
        ),
    ],
)
def test_geojson_source_errors_are_clear(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.geojson"
    path.write_bytes(content)
    with pytest.raises(PolygonSourceError, match=message):
        GeoJsonSource(path)


def test_geojson_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolygonSourceError, match="No such file"):
        GeoJsonSource(tmp_path / "missing.geojson")


def test_database_settings() -> None:
    settings = Settings.from_env(
        {
            "IPGEO_DATABASE_URL": "postgresql://ipgeo:secret@db:5432/ipgeo",
            "IPGEO_TZ_NEAREST_KM": "12.5",
            "IPGEO_DATABASE_TIMEOUT": "0.25",
        }
    )
    assert settings.timezones.database_url == "postgresql://ipgeo:secret@db:5432/ipgeo"
    assert settings.timezones.nearest_km == 12.5
    assert settings.timezones.timeout == 0.25
    assert Settings.from_env({"IPGEO_DATABASE_URL": ""}).timezones.database_url is None
    for variable, value in (
        ("IPGEO_DATABASE_URL", "mysql://db/x"),
        ("IPGEO_DATABASE_URL", "postgresql://db:notaport/x"),
        ("IPGEO_TZ_NEAREST_KM", "-1"),
        ("IPGEO_DATABASE_TIMEOUT", "soon"),
    ):
        with pytest.raises(SettingsError) as error:
            Settings.from_env({variable: value})
        assert error.value.variable == variable
