"""Geolocation domain: databases, queries, time zones. Never imports Flask."""

from ipgeo.geo.attribution import Attribution, attribution_text, attributions
from ipgeo.geo.database import ATTRIBUTION, DatabaseError
from ipgeo.geo.errors import (
    DatabaseUnavailable,
    GeoError,
    InvalidQuery,
    NotFound,
    ReservedAddress,
    Unresolvable,
)
from ipgeo.geo.models import FIELDS, DatabaseInfo, LookupResult
from ipgeo.geo.service import GeoService

__all__ = [
    "ATTRIBUTION",
    "FIELDS",
    "Attribution",
    "DatabaseError",
    "DatabaseInfo",
    "DatabaseUnavailable",
    "GeoError",
    "GeoService",
    "InvalidQuery",
    "LookupResult",
    "NotFound",
    "ReservedAddress",
    "Unresolvable",
    "attribution_text",
    "attributions",
]
