"""Time-zone fill-in from PostGIS polygons, falling back to the embedded finder when it is down."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from ipgeo.geo.timezone_polygons import nautical_zone
from ipgeo.geo.timezones import EmbeddedTimezoneLocator, TimezoneLocator

log = logging.getLogger("ipgeo.geo.postgis")

# The containing polygon (the lowest rank where zones overlap); else the nearest one within
# %(meters)s for coastal points just outside every polygon (the KNN index scan proposes
# candidates, geodesic distance decides).
# COALESCE evaluates the second sub-select only when the first finds nothing.
LOCATE_SQL = """
SELECT COALESCE(
  (SELECT t.tzid FROM timezone_polygons t
    WHERE ST_Contains(t.geom, ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326))
    ORDER BY t.rank
    LIMIT 1),
  (SELECT c.tzid FROM (
      SELECT t.tzid, t.geom FROM timezone_polygons t
       WHERE %(meters)s > 0
       ORDER BY t.geom <-> ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)
       LIMIT 8) AS c
    WHERE ST_DWithin(c.geom::geography,
                     ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography, %(meters)s)
    ORDER BY ST_Distance(c.geom::geography,
                         ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography)
    LIMIT 1))
"""

_STATUS_SQL = "SELECT source, data_version, zones, pieces, loaded_at FROM timezone_load"

# Errors that mean "PostgreSQL cannot answer now" (down, restarting, not loaded, too slow).
_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.UndefinedTable, PoolTimeout)


class PostgisTimezoneLocator:
    """Finds zones with ``ST_Contains`` (then the nearest polygon) in ``timezone_polygons``.

    When PostgreSQL cannot answer, lookups use ``fallback`` (the embedded finder) and a warning
    is logged at most once per ``warn_interval``; PostgreSQL is tried again in the background
    every ``retry_interval`` seconds, so recovery needs no restart.
    """

    name = "postgis"

    def __init__(
        self,
        url: str,
        nearest_km: float = 30.0,
        timeout: float = 0.5,
        fallback: TimezoneLocator | None = None,
        pool_size: int = 8,
        retry_interval: float = 5.0,
        warn_interval: float = 60.0,
    ) -> None:
        self.url = url
        self.nearest_m = nearest_km * 1000.0
        self.timeout = timeout
        self.fallback: TimezoneLocator = fallback or EmbeddedTimezoneLocator()
        self.pool_size = pool_size
        self.retry_interval = retry_interval
        self.warn_interval = warn_interval
        self.lookups = 0  # answered by PostgreSQL
        self.fallbacks = 0  # answered by the fallback
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] | None = None
        self._pool_pid = 0
        self._down_since: float | None = None
        self._last_error = ""
        self._next_retry = 0.0
        self._last_warning = float("-inf")
        self._probing = False

    # -- connections -------------------------------------------------------------------------

    def _get_pool(self) -> ConnectionPool[psycopg.Connection[tuple[Any, ...]]]:
        # Opened lazily and once per process: a pool made before a pre-fork server forks its
        # workers would share sockets (and lose its threads) in the children.
        pool = self._pool
        if pool is not None and self._pool_pid == os.getpid():
            return pool
        with self._lock:
            if self._pool is None or self._pool_pid != os.getpid():
                statement_ms = max(1, round(self.timeout * 1000))
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs={
                        "autocommit": True,
                        "connect_timeout": 2,
                        "options": f"-c statement_timeout={statement_ms}",
                        "application_name": "ipgeo",
                    },
                    timeout=max(self.timeout, 1.0),
                    name="ipgeo-timezones",
                    open=False,
                )
                self._pool.open(wait=False)
                self._pool_pid = os.getpid()
            return self._pool

    def close(self) -> None:
        """Close the connection pool (only this process's)."""
        with self._lock:
            if self._pool is not None and self._pool_pid == os.getpid():
                self._pool.close()
            self._pool = None

    # -- lookups -------------------------------------------------------------------------------

    def locate(self, latitude: float, longitude: float) -> str | None:
        """Return the zone name at the point, or ``None`` when unknown."""
        if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
            return None
        if self._down_since is not None:
            self._maybe_probe()
            return self._fall_back(latitude, longitude)
        try:
            zone = self._query(latitude, longitude)
        except _UNAVAILABLE as exc:
            self._mark_down(exc)
            return self._fall_back(latitude, longitude)
        except psycopg.errors.QueryCanceled as exc:  # statement timeout: this lookup only
            self._warn(f"time-zone lookup timed out in PostgreSQL ({exc}); using the fallback")
            return self._fall_back(latitude, longitude)
        with self._lock:
            self.lookups += 1
        # Outside every land polygon and far from any: the nautical zone of the longitude,
        # exactly as timezone-boundary-builder's ocean polygons (and the embedded finder) say.
        return zone or nautical_zone(longitude)

    def _query(self, latitude: float, longitude: float) -> str | None:
        params = {"lat": latitude, "lng": longitude, "meters": self.nearest_m}
        with self._get_pool().connection() as conn:
            row = conn.execute(LOCATE_SQL, params, prepare=True).fetchone()
        return row[0] if row else None

    def _fall_back(self, latitude: float, longitude: float) -> str | None:
        with self._lock:
            self.fallbacks += 1
        return self.fallback.locate(latitude, longitude)

    # -- availability -----------------------------------------------------------------------

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_warning < self.warn_interval:
                return
            self._last_warning = now
        log.warning(message)

    def _mark_down(self, exc: BaseException) -> None:
        error = _describe(exc)
        with self._lock:
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
            self._last_error = error
            self._next_retry = time.monotonic() + self.retry_interval
        self._warn(
            f"PostgreSQL time-zone lookups unavailable ({error}); "
            f"using the {self.fallback.name} finder, retrying every {self.retry_interval:g}s"
        )

    def _mark_up(self) -> None:
        with self._lock:
            was_down = self._down_since is not None
            self._down_since = None
            self._last_error = ""
        if was_down:
            log.warning("PostgreSQL time-zone lookups available again")

    def _maybe_probe(self) -> None:
        with self._lock:
            if self._probing or time.monotonic() < self._next_retry:
                return
            self._probing = True
            self._next_retry = time.monotonic() + self.retry_interval
        threading.Thread(target=self._probe, name="ipgeo-postgis-probe", daemon=True).start()

    def _probe(self) -> None:
        try:
            self._get_pool().check()  # drop connections that broke while the server was away
            self.status()
        except Exception as exc:  # recorded by status(); the probe thread must not die loudly
            log.debug("PostgreSQL probe failed: %s", exc)
        finally:
            with self._lock:
                self._probing = False

    def status(self) -> dict[str, Any]:
        """Check PostgreSQL now; return what is loaded; raise (and fall back) when unavailable."""
        try:
            with self._get_pool().connection() as conn:
                row = conn.execute(_STATUS_SQL).fetchone()
                conn.execute(LOCATE_SQL, {"lat": 0.0, "lng": 0.0, "meters": 0.0}, prepare=True)
        except _UNAVAILABLE as exc:
            self._mark_down(exc)
            raise
        if row is None:
            missing = psycopg.errors.UndefinedTable("no time-zone polygons loaded")
            self._mark_down(missing)
            raise missing
        self._mark_up()
        source, data_version, zones, pieces, loaded_at = row
        return {
            "source": source,
            "data_version": data_version,
            "zones": zones,
            "pieces": pieces,
            "loaded_at": loaded_at.isoformat(),
        }

    def health(self) -> dict[str, Any]:
        """Readiness: ``ok`` with what is loaded, or ``degraded`` while falling back."""
        degraded = {"status": "degraded", "backend": "postgis", "fallback": self.fallback.name}
        with self._lock:
            # While down, probe at the retry pace only, not at every readiness request.
            if self._down_since is not None and time.monotonic() < self._next_retry:
                return degraded | {"error": self._last_error}
            if self._down_since is not None:
                self._next_retry = time.monotonic() + self.retry_interval
        try:
            details = self.status()
        except (*_UNAVAILABLE, psycopg.Error) as exc:
            return degraded | {"error": _describe(exc)}
        return {"status": "ok", "backend": "postgis", **details}

    @property
    def available(self) -> bool:
        """False while lookups fall back to the embedded finder."""
        return self._down_since is None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return "time-zone polygons not loaded (run `ipgeo db load-timezones`)"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
