from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipgeo.geo import DatabaseError, GeoService, NotFound, ReservedAddress
from ipgeo.geo.queries import parse_ip
from tests.mmdbgen import city_record, write_mmdb


@pytest.fixture(scope="module")
def city(testdata: Path) -> GeoService:
    return GeoService(testdata / "GeoIP2-City-Test.mmdb", testdata / "GeoLite2-ASN-Test.mmdb")


def _networks(path: Path) -> list[tuple[str, dict[str, Any]]]:
    return [next(iter(item.items())) for item in json.loads(path.read_text())]


def test_documented_city_answers(city: GeoService) -> None:
    london = city.lookup("81.2.69.142")
    assert (london.country_iso, london.city, london.region_code) == ("GB", "London", "ENG")
    assert london.time_zone == "Europe/London"
    assert london.time_zone_source == "database"
    assert london.network == "81.2.69.142/31"
    milton = city.lookup("216.160.83.56")
    assert (milton.city, milton.postal_code, milton.accuracy_radius_km) == ("Milton", "98354", 22)
    assert milton.asn == 209
    tokyo = city.lookup("2001:218::1")
    assert (tokyo.country_iso, tokyo.version, tokyo.time_zone) == ("JP", 6, "Asia/Tokyo")
    linkoping = city.lookup("89.160.20.128")
    assert linkoping.country_eu is True
    assert (linkoping.asn, linkoping.asn_org) == (29518, "Bredband2 AB")


def test_every_network_of_the_city_source_json(city: GeoService, testdata: Path) -> None:
    checked = 0
    for cidr, record in _networks(testdata / "GeoIP2-City-Test.json"):
        ip = parse_ip(cidr.split("/")[0])
        assert ip is not None
        try:
            result = city.lookup_ip(ip)
        except (ReservedAddress, NotFound):
            continue
        country = record.get("country") or record.get("registered_country") or {}
        assert result.country_iso == country.get("iso_code"), cidr
        assert result.city == record.get("city", {}).get("names", {}).get("en"), cidr
        assert result.latitude == record.get("location", {}).get("latitude"), cidr
        checked += 1
    assert checked > 50


def test_every_network_of_the_asn_source_json(city: GeoService, testdata: Path) -> None:
    for cidr, record in _networks(testdata / "GeoLite2-ASN-Test.json"):
        ip = parse_ip(cidr.split("/")[0])
        assert ip is not None
        if ip.is_global:
            asn, org = city.current().asn_of(ip.version, int(ip))
            assert asn == record["autonomous_system_number"], cidr
            assert org == record.get("autonomous_system_organization"), cidr


def test_country_database(testdata: Path) -> None:
    service = GeoService(testdata / "GeoLite2-Country-Test.mmdb")
    result = service.lookup("2.125.160.216")
    assert result.country_iso == "GB"
    assert result.city is None and result.latitude is None and result.time_zone is None
    assert service.city.info.database_type == "GeoLite2-Country"


def test_languages_with_fallback(testdata: Path) -> None:
    service = GeoService(testdata / "GeoIP2-City-Test.mmdb", languages=("de", "en"))
    assert service.lookup("2001:218::1").country == "Japan"
    assert service.lookup("2001:220::1").country == "Republik Korea"
    assert service.lookup("2001:220::1", lang="fr").country == "Corée du Sud"
    assert service.lookup("2001:220::1", lang="xx").country == "Republik Korea"


def test_metadata(city: GeoService) -> None:
    info = city.city.info
    assert info.database_type == "GeoIP2-City"
    assert info.ip_version == 6
    assert info.node_count > 0
    assert info.build_date.endswith("Z")


@pytest.mark.parametrize(
    "name",
    ["GeoIP2-City-Test-Broken-Double-Format.mmdb", "MaxMind-DB-test-broken-search-tree-24.mmdb"],
)
def test_broken_databases_fail_clearly(testdata: Path, name: str) -> None:
    with pytest.raises(DatabaseError, match="not a valid MaxMind database"):
        GeoService(testdata / name)


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        GeoService(tmp_path / "nope.mmdb")
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"\x00" * 4096)
    with pytest.raises(DatabaseError, match="not a valid MaxMind database"):
        GeoService(garbage)


def test_reserved_addresses_say_why(city: GeoService) -> None:
    for query, fragment in [
        ("10.1.2.3", "private"),
        ("127.0.0.1", "loopback"),
        ("169.254.1.1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("fe80::1", "link-local"),
        ("::1", "loopback"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("::ffff:192.168.1.1", "private"),
    ]:
        with pytest.raises(ReservedAddress, match=fragment):
            city.lookup(query)


def test_not_found(city: GeoService) -> None:
    with pytest.raises(NotFound):
        city.lookup("8.8.8.8")


def test_time_zone_filled_in_from_polygons(tmp_path: Path) -> None:
    path = write_mmdb(
        tmp_path / "dbip.mmdb",
        {
            "5.9.0.0/16": city_record("Germany", "DE", "Berlin", 52.52, 13.405),
            "5.10.0.0/16": city_record("Japan", "JP", "Tokyo", 35.68, 139.76, "Asia/Tokyo"),
            "5.11.0.0/16": {"country": {"iso_code": "FR", "names": {"en": "France"}}},
        },
    )
    service = GeoService(path)
    berlin = service.lookup("5.9.1.1")
    assert (berlin.time_zone, berlin.time_zone_source) == ("Europe/Berlin", "polygon")
    assert berlin.utc_offset in {"+01:00", "+02:00"}
    assert berlin.local_time is not None and berlin.local_time.endswith(berlin.utc_offset)
    tokyo = service.lookup("5.10.1.1")
    assert (tokyo.time_zone, tokyo.time_zone_source, tokyo.utc_offset) == (
        "Asia/Tokyo",
        "database",
        "+09:00",
    )
    france = service.lookup("5.11.1.1")
    assert france.time_zone is None and france.time_zone_source is None
