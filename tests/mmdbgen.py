"""Writing small MaxMind-format databases for tests (DB-IP-like records, no time zones)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet


def write_mmdb(
    path: Path, networks: dict[str, dict[str, Any]], database_type: str = "DBIP-City-Lite"
) -> Path:
    """Write ``networks`` (CIDR → record) as an IPv6 tree with IPv4 mapped in."""
    writer = MMDBWriter(
        ip_version=6,
        database_type=database_type,
        languages=["en"],
        description={"en": "ipgeo test database"},
        ipv4_compatible=True,
    )
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))
    return path


def city_record(
    country: str, iso: str, city: str, lat: float, lon: float, time_zone: str | None = None
) -> dict[str, Any]:
    """A GeoIP2-shaped city record."""
    location: dict[str, Any] = {"latitude": lat, "longitude": lon}
    if time_zone:
        location["time_zone"] = time_zone
    return {
        "country": {"iso_code": iso, "names": {"en": country}},
        "city": {"names": {"en": city}},
        "location": location,
    }
