"""Readiness checks of the databases for ``/readyz``."""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from flask import current_app

from ipgeo.geo.database import MaxMindDatabase
from ipgeo.geo.errors import GeoError
from ipgeo.web.api import geo_service

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


def database_check() -> dict[str, Any]:
    """The City/Country database: down when unreadable, degraded when stale or a reload failed."""
    service = geo_service()
    service.refresh()
    result = _describe(service.city)
    result["generation"] = service.generation
    max_age = current_app.extensions["ipgeo.settings"].db_max_age_days
    if max_age and result["age_days"] > max_age:
        result["status"] = "degraded"
        result["problem"] = f"the database is older than {max_age} days"
    if service.last_reload_error:
        result["status"] = "degraded"
        result["reload_error"] = service.last_reload_error
    return result


def asn_database_check() -> dict[str, Any]:
    """The optional ASN database: lookups still work without it, so at worst degraded."""
    asn = geo_service().asn
    if asn is None:
        return {"status": "ok", "configured": False}
    try:
        return _describe(asn)
    except (GeoError, OSError) as exc:
        return {"status": "degraded", "error": str(exc)}
