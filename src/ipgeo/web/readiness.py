"""Readiness checks of the databases for ``/readyz``."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

from ipgeo.geo import GeoService
from ipgeo.geo.database import MaxMindDatabase
from ipgeo.geo.errors import GeoError

_PROBE = ipaddress.ip_address("1.1.1.1")


def _describe(database: MaxMindDatabase) -> dict[str, Any]:
    database.record(_PROBE)  # a real read: raises when the file is unusable
    info = database.info
    return {
        "status": "ok",
        "type": info.database_type,
        "path": info.path,
        "build_date": info.build_date,
        "age_days": round((time.time() - info.build_epoch) / 86400, 1),
    }


def database_check(service: GeoService, max_age_days: int) -> Callable[[], dict[str, Any]]:
    """The City/Country database: down when unreadable, degraded when stale or a reload failed."""

    def check() -> dict[str, Any]:
        service.refresh()
        result = _describe(service.city)
        result["generation"] = service.generation
        if max_age_days and result["age_days"] > max_age_days:
            result["status"] = "degraded"
            result["problem"] = f"the database is older than {max_age_days} days"
        if service.last_reload_error:
            result["status"] = "degraded"
            result["reload_error"] = service.last_reload_error
        return result

    return check


def asn_database_check(service: GeoService) -> Callable[[], dict[str, Any]]:
    """The optional ASN database: lookups still work without it, so at worst degraded."""

    def check() -> dict[str, Any]:
        asn = service.asn
        if asn is None:
            return {"status": "ok", "configured": False}
        try:
            return _describe(asn)
        except (GeoError, OSError) as exc:
            return {"status": "degraded", "error": str(exc)}

    return check
