"""Loading time-zone polygons into PostGIS: a new table, filled and indexed, swapped in at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
import shapely
from psycopg import errors

from ipgeo.geo.polygon_pieces import make_polygon, subdivide
from ipgeo.geo.postgis_schema import ADVISORY_LOCK_KEY, apply_migrations
from ipgeo.geo.timezone_polygons import PolygonSource, ZonePolygon, is_ocean_zone

# Pieces of at most this many vertices keep every point-in-polygon test small.
MAX_VERTICES = 256
BATCH = 32  # polygons cut and copied at a time

# phase ("polygons", "index", "swap"), done, total
ProgressCallback = Callable[[str, int, int], None]

_SWAP = (
    "DROP TABLE timezone_polygons",
    "ALTER TABLE timezone_polygons_next RENAME TO timezone_polygons",
    "ALTER INDEX timezone_polygons_next_geom_idx RENAME TO timezone_polygons_geom_idx",
)


class LoadError(RuntimeError):
    """The polygons could not be loaded; the previous table is still in place."""


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """What a load did."""

    source: str
    data_version: str | None
    zones: int
    polygons: int
    pieces: int
    seconds: float


def load_timezones(
    conninfo: str,
    source: PolygonSource,
    progress: ProgressCallback | None = None,
    lock_timeout: float = 2.0,
) -> LoadSummary:
    """Replace the time-zone polygons with those of ``source`` in one transaction."""
    report = progress or (lambda phase, done, total: None)
    started = time.monotonic()
    try:
        with psycopg.connect(conninfo, connect_timeout=10, autocommit=True) as conn:
            apply_migrations(conn)
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = 0")
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                zones, polygons = _fill_next_table(conn, source, report)
                pieces = _index_next_table(conn, report)
                _swap(conn, lock_timeout, report)
                conn.execute(
                    "INSERT INTO timezone_load"
                    " (id, source, data_version, zones, polygons, pieces, loaded_at)"
                    " VALUES (1, %s, %s, %s, %s, %s, now())"
                    " ON CONFLICT (id) DO UPDATE SET source = EXCLUDED.source,"
                    " data_version = EXCLUDED.data_version, zones = EXCLUDED.zones,"
                    " polygons = EXCLUDED.polygons, pieces = EXCLUDED.pieces,"
                    " loaded_at = EXCLUDED.loaded_at",
                    (source.description, source.data_version, zones, polygons, pieces),
                )
    except psycopg.Error as exc:
        raise LoadError(str(exc).strip() or type(exc).__name__) from exc
    return LoadSummary(
        source=source.description,
        data_version=source.data_version,
        zones=zones,
        polygons=polygons,
        pieces=pieces,
        seconds=time.monotonic() - started,
    )


def _fill_next_table(
    conn: psycopg.Connection[tuple[object, ...]], source: PolygonSource, report: ProgressCallback
) -> tuple[int, int]:
    conn.execute("DROP TABLE IF EXISTS timezone_polygons_next")
    conn.execute(
        "CREATE TABLE timezone_polygons_next"
        " (LIKE timezone_polygons INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    )
    total = len(source)
    zones: dict[str, int] = {}  # zone -> vertex count, its rank
    count = read = 0
    report("polygons", 0, total)
    with conn.cursor().copy("COPY timezone_polygons_next (tzid, geom) FROM STDIN") as copy:
        for batch in _batches(source.polygons()):
            land = [polygon for polygon in batch if not is_ocean_zone(polygon.tzid)]
            for tzid, ewkb in _pieces(land):
                copy.write_row((tzid, ewkb))
            for polygon in land:
                zones[polygon.tzid] = zones.get(polygon.tzid, 0) + len(polygon.rings[0])
            count += len(land)  # ocean zones are computed from the longitude, not stored
            read += len(batch)
            report("polygons", read, total)
    if not count:
        raise LoadError(f"{source.description}: no land time-zone polygons")
    conn.execute("CREATE TEMP TABLE timezone_ranks (tzid text, rank integer) ON COMMIT DROP")
    with conn.cursor().copy("COPY timezone_ranks (tzid, rank) FROM STDIN") as copy:
        for row in zones.items():
            copy.write_row(row)
    conn.execute(
        "UPDATE timezone_polygons_next AS t SET rank = r.rank"
        " FROM timezone_ranks AS r WHERE r.tzid = t.tzid"
    )
    return len(zones), count


def _batches(polygons: Iterator[ZonePolygon]) -> Iterator[list[ZonePolygon]]:
    batch: list[ZonePolygon] = []
    for polygon in polygons:
        batch.append(polygon)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _pieces(polygons: list[ZonePolygon]) -> Iterator[tuple[str, str]]:
    """``(tzid, hex EWKB)`` of every piece of ``polygons``."""
    if not polygons:
        return
    shapes = [make_polygon(polygon.rings) for polygon in polygons]
    owners = np.concatenate([np.full(len(parts), i) for i, parts in enumerate(shapes)])
    pieces, piece_owners = subdivide(np.concatenate(shapes), MAX_VERTICES)
    wkb = shapely.to_wkb(shapely.set_srid(pieces, 4326), hex=True, include_srid=True)
    for i, ewkb in enumerate(wkb):
        yield polygons[int(owners[piece_owners[i]])].tzid, str(ewkb)


def _index_next_table(
    conn: psycopg.Connection[tuple[object, ...]], report: ProgressCallback
) -> int:
    report("index", 0, 2)
    conn.execute(
        "CREATE INDEX timezone_polygons_next_geom_idx ON timezone_polygons_next USING gist (geom)"
    )
    report("index", 1, 2)
    conn.execute("ANALYZE timezone_polygons_next")
    report("index", 2, 2)
    row = conn.execute("SELECT count(*) FROM timezone_polygons_next").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def _swap(
    conn: psycopg.Connection[tuple[object, ...]], lock_timeout: float, report: ProgressCallback
) -> None:
    """Swap the new table in; retry when readers hold the old one longer than ``lock_timeout``."""
    report("swap", 0, 1)
    for attempt in range(30):
        try:
            with conn.transaction():  # a savepoint: a lock timeout only undoes the swap
                conn.execute(
                    "SELECT set_config('lock_timeout', %s, true)",
                    (f"{int(lock_timeout * 1000)}ms",),
                )
                for statement in _SWAP:
                    conn.execute(statement)
                conn.execute("SELECT set_config('lock_timeout', '0', true)")
        except errors.LockNotAvailable:
            time.sleep(min(0.1 * (attempt + 1), 1.0))
            continue
        report("swap", 1, 1)
        return
    raise LoadError("could not lock timezone_polygons to swap the new polygons in")
