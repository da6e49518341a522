"""Time-zone fill-in from polygons, and offset/local-time details for a zone."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ipgeo.geo.models import TimeZoneInfo


class TimezoneLocator(Protocol):
    """Finds the IANA time zone that contains a point."""

    name: str

    def locate(self, latitude: float, longitude: float) -> str | None:
        """Return the zone name at the point, or ``None`` when unknown."""
        ...


class EmbeddedTimezoneLocator:
    """In-process locator over the polygons shipped with ``timezonefinder``."""

    name = "embedded"

    def __init__(self) -> None:
        self._local = threading.local()

    def _get_finder(self) -> object:
        # One finder per thread: timezonefinder instances are not thread-safe. Created
        # lazily, since loading the polygon index costs time a lookup may never need.
        finder = getattr(self._local, "finder", None)
        if finder is None:
            from timezonefinder import TimezoneFinder

            finder = self._local.finder = TimezoneFinder()
        return finder

    def locate(self, latitude: float, longitude: float) -> str | None:
        """Return the zone name at the point, or ``None`` when unknown."""
        if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
            return None
        finder = self._get_finder()
        zone: str | None = finder.timezone_at(lat=latitude, lng=longitude)  # type: ignore[attr-defined]
        return zone


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def format_offset(seconds: int) -> str:
    """Format an offset in seconds as ``+HH:MM``."""
    sign = "-" if seconds < 0 else "+"
    minutes = abs(seconds) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


# (zone name, source) -> (Unix second, details at that second): answers within one second
# share the work (local time has whole seconds, and offsets change on whole seconds).
_CLOCK: dict[tuple[str, str], tuple[int, TimeZoneInfo | None]] = {}
_CLOCK_SIZE = 4096


def zone_details(name: str, source: str, now: datetime | None = None) -> TimeZoneInfo | None:
    """Return offset and local time for zone ``name`` at ``now`` (``None`` for unknown zones)."""
    if now is not None:
        return _zone_details(name, source, now)
    second = int(time.time())
    key = (name, source)
    known = _CLOCK.get(key)
    if known is not None and known[0] == second:
        return known[1]
    details = _zone_details(name, source, datetime.fromtimestamp(second, UTC))
    if len(_CLOCK) >= _CLOCK_SIZE:
        _CLOCK.clear()
    _CLOCK[key] = (second, details)
    return details


def _zone_details(name: str, source: str, now: datetime) -> TimeZoneInfo | None:
    zone = _zone(name)
    if zone is None:
        return None
    local = now.astimezone(zone).replace(microsecond=0)
    offset = local.utcoffset()
    seconds = int(offset.total_seconds()) if offset is not None else 0
    return TimeZoneInfo(
        name=name,
        source=source,
        utc_offset=format_offset(seconds),
        local_time=local.isoformat(),
    )
