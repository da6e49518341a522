"""Time-zone fill-in lookups per second: the embedded finder vs PostGIS, in the same run.

Starts a private PostgreSQL 15 + PostGIS (as the tests do), loads the timezonefinder polygons,
then times ``locate()`` of both backends over the same random land points (and offshore points
for the nearest-polygon path), single-threaded and with 4 threads.

    .venv/bin/python -m bench.timezones [--points 20000]
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from timezonefinder import TimezoneFinder

from ipgeo.geo.postgis_locator import PostgisTimezoneLocator
from ipgeo.geo.timezone_loader import load_timezones
from ipgeo.geo.timezone_polygons import TimezonefinderSource, is_ocean_zone
from ipgeo.geo.timezones import EmbeddedTimezoneLocator
from tests.pgserver import database_url, postgis_server

Point = tuple[float, float]


def land_points(count: int, seed: int = 1) -> list[Point]:
    """Uniformly random points on land (as the embedded finder sees it)."""
    finder = TimezoneFinder()
    rnd = random.Random(seed)
    points: list[Point] = []
    while len(points) < count:
        lat, lng = math.degrees(math.asin(rnd.uniform(-1, 1))), rnd.uniform(-180, 180)
        if not is_ocean_zone(finder.timezone_at(lat=lat, lng=lng) or "Etc/GMT"):
            points.append((lat, lng))
    return points


def rate(locate: Callable[[float, float], str | None], points: list[Point], threads: int) -> float:
    """Lookups per second over ``points``."""
    start = time.perf_counter()
    if threads == 1:
        for lat, lng in points:
            locate(lat, lng)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda p: locate(*p), points))
    return len(points) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000)
    args = parser.parse_args()
    points = land_points(args.points)
    offshore = [(-33.05 + i * 1e-4, -72.20) for i in range(max(1, args.points // 10))]

    embedded = EmbeddedTimezoneLocator()
    embedded.locate(*points[0])  # load the polygon index outside the timing
    with postgis_server() as executor:
        url = database_url(executor)
        summary = load_timezones(url, TimezonefinderSource())
        print(f"loaded {summary.pieces} pieces of {summary.zones} zones in {summary.seconds:.1f}s")
        postgis = PostgisTimezoneLocator(url)
        rate(postgis.locate, points[:500], 4)  # warm the pool and prepared statements
        rows = [
            ("embedded, 1 thread", rate(embedded.locate, points, 1)),
            ("postgis, 1 thread", rate(postgis.locate, points, 1)),
            ("postgis, 4 threads", rate(postgis.locate, points, 4)),
            ("postgis offshore (nearest), 1 thread", rate(postgis.locate, offshore, 1)),
        ]
        assert postgis.fallbacks == 0, "PostgreSQL did not answer every lookup"
        postgis.close()
    baseline = rows[0][1]
    print(f"\n{platform.python_implementation()} {platform.python_version()}, {len(points)} points")
    print("| backend | lookups/s | vs embedded |\n|---|---:|---:|")
    for name, value in rows:
        print(f"| {name} | {value:,.0f} | {value / baseline:.3f}x |")


if __name__ == "__main__":
    main()
