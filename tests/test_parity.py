"""Every field of 12,000 random public lookups equals reading the .mmdb directly."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import maxminddb
import pytest

from ipgeo.geo import GeoService, NotFound
from ipgeo.geo.database import bundled_city_db

_V6_BLOCKS = (0x200, 0x240, 0x260, 0x280, 0x2A0, 0x2C0)


def _random_public(
    rng: random.Random, version: int
) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    while True:
        if version == 4:
            ip: Any = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            # Inside the regional registries' big allocations, where real networks live.
            top = rng.choice(_V6_BLOCKS) << 116
            ip = ipaddress.IPv6Address(top | rng.getrandbits(116))
        if ip.is_global and not ip.is_multicast:
            return ip


def _name(node: dict[str, Any] | None) -> str | None:
    return (node or {}).get("names", {}).get("en")


def _expected(record: dict[str, Any], prefix: int, ip: Any) -> dict[str, Any]:
    country = record.get("country") or {}  # where the network is, never where it is registered
    registered = record.get("registered_country") or {}
    subdivision = (record.get("subdivisions") or [{}])[0]
    location = record.get("location", {})
    zone = location.get("time_zone")
    offset = None
    if zone:
        delta = datetime.now(UTC).astimezone(ZoneInfo(zone)).utcoffset()
        assert delta is not None
        minutes = int(delta.total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return {
        "ip": str(ip),
        "version": ip.version,
        "network": str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)),
        "continent": _name(record.get("continent")),
        "continent_code": record.get("continent", {}).get("code"),
        "country": _name(country),
        "country_iso": country.get("iso_code"),
        "country_eu": bool(country.get("is_in_european_union"))
        if country.get("iso_code")
        else None,
        "registered_country": _name(registered),
        "registered_country_iso": registered.get("iso_code"),
        "region": _name(subdivision),
        "region_code": subdivision.get("iso_code"),
        "city": _name(record.get("city")),
        "postal_code": record.get("postal", {}).get("code"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "accuracy_radius_km": location.get("accuracy_radius"),
        "time_zone": zone,
        "utc_offset": offset,
    }


@pytest.mark.parametrize(("version", "count"), [(4, 10_000), (6, 2_000)])
def test_random_lookups_match_the_raw_database(version: int, count: int) -> None:
    service = GeoService()
    reader = maxminddb.open_database(str(bundled_city_db()))
    rng = random.Random(20191224 + version)
    found = not_found = 0
    for _ in range(count):
        ip = _random_public(rng, version)
        record, prefix = reader.get_with_prefix_len(ip)
        if record is None:
            with pytest.raises(NotFound):
                service.lookup(str(ip))
            not_found += 1
            continue
        result = service.lookup(str(ip)).as_dict()
        expected = _expected(record, prefix, ip)
        got = {key: result[key] for key in expected}
        if result["time_zone_source"] == "polygon":
            # The database had coordinates but no zone: the polygon answer is checked elsewhere.
            got["time_zone"] = expected["time_zone"]
            got["utc_offset"] = expected["utc_offset"]
        assert got == expected, str(ip)
        assert result["asn"] is None and result["hostname"] is None
        if result["local_time"] is not None:
            local = datetime.fromisoformat(result["local_time"])
            assert abs((local - datetime.now(UTC)).total_seconds()) < 60
        found += 1
    assert found > count // 40  # enough real records were compared, not only misses
