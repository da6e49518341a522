"""The service's own result types (independent of any database library)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

# Every lookup answer has exactly these keys, in this order.
FIELDS: tuple[str, ...] = (
    "ip",
    "query",
    "version",
    "network",
    "hostname",
    "continent",
    "continent_code",
    "country",
    "country_iso",
    "country_eu",
    "registered_country",
    "registered_country_iso",
    "region",
    "region_code",
    "city",
    "postal_code",
    "latitude",
    "longitude",
    "accuracy_radius_km",
    "time_zone",
    "time_zone_source",
    "utc_offset",
    "local_time",
    "asn",
    "asn_org",
)


@dataclass(frozen=True, slots=True)
class TimeZoneInfo:
    """A resolved time zone with its source and current offset."""

    name: str
    source: str  # "database" or "polygon"
    utc_offset: str
    local_time: str


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The flat answer for one IP address; every field of ``FIELDS`` is present."""

    ip: str
    query: str
    version: int
    network: str | None = None
    hostname: str | None = None
    continent: str | None = None
    continent_code: str | None = None
    country: str | None = None
    country_iso: str | None = None
    country_eu: bool | None = None
    registered_country: str | None = None
    registered_country_iso: str | None = None
    region: str | None = None
    region_code: str | None = None
    city: str | None = None
    postal_code: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    accuracy_radius_km: int | None = None
    time_zone: str | None = None
    time_zone_source: str | None = None
    utc_offset: str | None = None
    local_time: str | None = None
    asn: int | None = None
    asn_org: str | None = None
    addresses: tuple[str, ...] | None = None

    def as_dict(self, selected: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Return the flat mapping (``addresses`` only for domain queries)."""
        names = selected if selected is not None else self.field_names()
        return {name: getattr(self, name) for name in names}

    def field_names(self) -> tuple[str, ...]:
        """The keys of this result: ``FIELDS``, plus ``addresses`` for domain queries."""
        return (*FIELDS, "addresses") if self.addresses is not None else FIELDS


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """Metadata of an opened MaxMind-format database."""

    path: str
    database_type: str
    build_epoch: int
    ip_version: int
    node_count: int
    record_size: int
    languages: tuple[str, ...]
    description: str

    @property
    def build_date(self) -> str:
        """The build time as an ISO 8601 UTC timestamp."""
        return datetime.fromtimestamp(self.build_epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def as_dict(self) -> dict[str, Any]:
        """Return the metadata as a JSON-ready mapping."""
        data = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        data["languages"] = list(self.languages)
        data["build_date"] = self.build_date
        return data
