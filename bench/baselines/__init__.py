"""Baseline apps the HTTP benchmark compares ipgeo with (see docs/benchmarks.md).

They answer ``GET /api/v1/lookup/<ip>`` the way a typical small Flask + ``geoip2`` service
does, with a flat JSON answer of about the size ipgeo's is. The database is the same
bundled GeoLite2 City file ipgeo uses by default (``BENCH_CITY_DB`` overrides it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ipgeo.geo.database import bundled_city_db


def city_db_path() -> Path:
    """The City database every baseline reads."""
    override = os.environ.get("BENCH_CITY_DB")
    return Path(override) if override else bundled_city_db()


def flat_answer(ip: str, city: Any) -> dict[str, Any]:
    """The usual hand-written mapping of a ``geoip2`` City model to a flat dict."""
    return {
        "ip": ip,
        "network": str(city.traits.network),
        "continent": city.continent.name,
        "country": city.country.name,
        "country_iso": city.country.iso_code,
        "region": city.subdivisions.most_specific.name,
        "city": city.city.name,
        "postal_code": city.postal.code,
        "latitude": city.location.latitude,
        "longitude": city.location.longitude,
        "accuracy_radius_km": city.location.accuracy_radius,
        "time_zone": city.location.time_zone,
    }
