"""Time-zone polygon sources for the PostGIS loader: ``timezonefinder``'s data or a GeoJSON file."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson

Ring = npt.NDArray[np.float64]  # shape (n, 2): longitude, latitude

# timezonefinder stores coordinates as int32 multiples of 1e-7 degrees.
_TZF_SCALE = 1e-7


class PolygonSourceError(ValueError):
    """A polygon source cannot be read (missing file, not GeoJSON, no zone names...)."""


@dataclass(frozen=True, slots=True)
class ZonePolygon:
    """One polygon of a time zone: the outer ring first, then its holes."""

    tzid: str
    rings: list[Ring]


class PolygonSource(Protocol):
    """Where polygons come from: a description, a data version and the polygons."""

    description: str
    data_version: str | None

    def __len__(self) -> int:
        """Number of polygons ``polygons()`` yields."""
        ...

    def polygons(self) -> Iterator[ZonePolygon]:
        """Yield every polygon with its zone name."""
        ...


def is_ocean_zone(tzid: str) -> bool:
    """True for timezone-boundary-builder's ocean zones (``Etc/GMT+5`` ...)."""
    return tzid.startswith("Etc/GMT")


def nautical_zone(longitude: float) -> str:
    """The ocean zone at ``longitude``: 15-degree bands, as timezone-boundary-builder draws them."""
    hours = max(-12, min(12, math.floor((longitude + 7.5) / 15.0)))
    if hours == 0:
        return "Etc/GMT"
    # POSIX-style names: Etc/GMT+5 is five hours *behind* UTC.
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


class TimezonefinderSource:
    """The polygons shipped with ``timezonefinder`` (``timezonefinder-data``), oceans included."""

    def __init__(self) -> None:
        from timezonefinder import TimezoneFinder

        self._finder = TimezoneFinder()
        self.data_version: str | None = str(self._finder.data_version)
        self.description = f"timezonefinder data {self.data_version}"

    def __len__(self) -> int:
        return int(self._finder.nr_of_polygons)

    def _rings(self, boundary_id: int) -> list[Ring]:
        finder = self._finder
        holes = getattr(finder, "holes", None)
        if holes is None or not hasattr(holes, "ids_of"):
            # Older timezonefinder releases: the documented (slower) accessor.
            return [
                np.asarray(ring, dtype=np.float64).T
                for ring in finder.get_polygon(boundary_id, coords_as_pairs=False)
            ]
        coords = [finder.coords_of(boundary_id)]
        coords += [holes.coords_of(hole_id) for hole_id in holes.ids_of(boundary_id)]
        return [np.asarray(item, dtype=np.float64).T * _TZF_SCALE for item in coords]

    def polygons(self) -> Iterator[ZonePolygon]:
        """Yield every boundary polygon of every zone, with its holes."""
        names = self._finder.timezone_names
        zone_ids = self._finder.zone_ids
        for boundary_id in range(len(self)):
            tzid = names[int(zone_ids[boundary_id])]
            yield ZonePolygon(tzid, self._rings(boundary_id))


class GeoJsonSource:
    """A timezone-boundary-builder GeoJSON file (``.json``/``.geojson``, or a ``.zip`` of one)."""

    def __init__(self, path: Path) -> None:
        self.description = str(path)
        self.data_version: str | None = None
        self._features = _read_features(path)
        self._count = sum(len(_polygon_coordinates(feature)) for feature in self._features)

    def __len__(self) -> int:
        return self._count

    def polygons(self) -> Iterator[ZonePolygon]:
        """Yield every polygon of every feature."""
        for feature in self._features:
            tzid = _zone_name(feature)
            for polygon in _polygon_coordinates(feature):
                try:
                    rings = [np.asarray(ring, dtype=np.float64)[:, :2] for ring in polygon]
                except (ValueError, IndexError, TypeError):
                    raise PolygonSourceError(f"{tzid}: malformed polygon coordinates") from None
                if any(len(ring) < 3 for ring in rings) or not rings:
                    raise PolygonSourceError(f"{tzid}: a polygon ring has fewer than 3 points")
                yield ZonePolygon(tzid, rings)


def _read_bytes(path: Path) -> bytes:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                members = [
                    name for name in archive.namelist() if name.endswith((".json", ".geojson"))
                ]
                if len(members) != 1:
                    raise PolygonSourceError(f"{path}: expected one .json/.geojson file inside")
                return archive.read(members[0])
        return path.read_bytes()
    except OSError as exc:
        raise PolygonSourceError(f"{path}: {exc.strerror or exc}") from None
    except zipfile.BadZipFile as exc:
        raise PolygonSourceError(f"{path}: {exc}") from None


def _read_features(path: Path) -> list[dict[str, Any]]:
    try:
        document = orjson.loads(_read_bytes(path))
    except orjson.JSONDecodeError as exc:
        raise PolygonSourceError(f"{path}: not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise PolygonSourceError(f"{path}: not a GeoJSON FeatureCollection")
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise PolygonSourceError(f"{path}: the FeatureCollection has no features")
    for feature in features:
        _zone_name(feature)
        _polygon_coordinates(feature)
    return features


def _zone_name(feature: Any) -> str:
    properties = feature.get("properties") if isinstance(feature, dict) else None
    properties = properties if isinstance(properties, dict) else {}
    # timezone-boundary-builder says "tzid"; tz_world-style conversions say "TZID".
    tzid = properties.get("tzid") or properties.get("TZID")
    if not isinstance(tzid, str) or not tzid:
        raise PolygonSourceError("a feature has no 'tzid' property")
    return tzid


def _polygon_coordinates(feature: dict[str, Any]) -> list[Any]:
    geometry = feature.get("geometry") or {}
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Polygon" and isinstance(coordinates, list):
        return [coordinates]
    if kind == "MultiPolygon" and isinstance(coordinates, list):
        return coordinates
    raise PolygonSourceError(
        f"{_zone_name(feature)}: geometry must be a Polygon or MultiPolygon, not {kind!r}"
    )
