"""The quick IPv4 lookup and its spliced JSON equal the regular lookup and rendering."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import mmdb_writer
import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from ipgeo.geo import GeoError, GeoService
from tests.mmdbgen import city_record
from tests.test_parity import _random_public


def _without_clock(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key != "local_time"}


@pytest.fixture(scope="module")
def service() -> GeoService:
    return GeoService()


def test_quick_rows_equal_regular_lookups(service: GeoService) -> None:
    rng = random.Random(7)
    quick_answers = 0
    for _ in range(3000):
        ip = _random_public(rng, 4)
        text = str(ip)
        quick = service.quick_ipv4(text)
        try:
            expected = service.lookup_ip(ip, query=text)
        except GeoError:
            assert quick is None, text  # not found: the regular path answers the error
            continue
        if quick is None:  # left to the regular path: only polygon time zones
            assert expected.time_zone_source == "polygon", text
            continue
        row, zone = quick.row, quick.zone
        head, middle, tail = quick.json_parts
        joined = head + orjson.dumps(row["utc_offset"]) + middle
        assert joined + orjson.dumps(row["local_time"]) + tail == orjson.dumps(row)
        assert list(row) == list(expected.as_dict())
        assert _without_clock(row) == _without_clock(expected.as_dict()), text
        assert (row["local_time"] is None) == (expected.local_time is None)
        assert zone == ((expected.time_zone, "database") if expected.time_zone else None)
        quick_answers += 1
    assert quick_answers > 1000


@pytest.mark.parametrize(
    "text",
    [
        "01.2.3.4",  # ipaddress refuses leading zeros
        "1.2.3",
        " 81.2.69.142",
        "81.2.69.142 ",
        "::ffff:81.2.69.142",
        "2a02:c7c::1",
        "0x51.2.69.142",
        "10.0.0.1",  # reserved
        "192.0.2.1",  # reserved (documentation)
        "example.com",
        "",
    ],
)
def test_quick_leaves_everything_else_to_the_regular_path(service: GeoService, text: str) -> None:
    assert service.quick_ipv4(text) is None


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_quick_walks_every_tree_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_size: int, ip_version: int
) -> None:
    networks = {
        "81.2.69.0/24": city_record("UK", "GB", "London", 51.5, -0.1, "Europe/London"),
        "81.2.70.0/23": city_record("UK", "GB", "Nowhere", 51.5, -0.1, "No/Such_Zone"),
        "8.8.8.0/24": {"country": {"iso_code": "US", "names": {"en": "United States"}}},
        "8.8.0.0/17": city_record("US", "US", "Polygons", 40.0, -100.0),  # no zone
        "1.0.0.0/8": city_record("AU", "AU", "Sydney", -33.9, 151.2, "Australia/Sydney"),
        "2001:4860::/32": city_record("US", "US", "V6", 37.4, -122.1, "America/Los_Angeles"),
    }
    if ip_version == 4:
        del networks["2001:4860::/32"]
    writer = MMDBWriter(
        ip_version=ip_version,
        database_type="DBIP-City-Lite",
        languages=["en"],
        ipv4_compatible=ip_version == 6,
    )
    original = mmdb_writer.TreeWriter._adjust_record_size

    def forced(tree: mmdb_writer.TreeWriter) -> None:  # every layout, not just the smallest
        original(tree)
        tree.record_size = record_size
        tree.data_offset = record_size * 2 / 8 * tree._node_counter

    monkeypatch.setattr(mmdb_writer.TreeWriter, "_adjust_record_size", forced)
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    service = GeoService(city_db=path)
    assert service.city.info.record_size == record_size
    rng = random.Random(record_size)
    addresses = ["81.2.69.142", "81.2.70.1", "81.2.71.255", "8.8.8.8", "8.8.4.4", "1.2.3.4"]
    addresses += ["9.9.9.9", "81.2.68.1", "1.0.0.0", "1.255.255.255"]
    addresses += [
        f"{rng.choice((1, 8, 81))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
        for _ in range(300)
    ]
    answered = 0
    for text in addresses:
        quick = service.quick_ipv4(text)
        try:
            expected = service.lookup_ip(ipaddress.ip_address(text), query=text)
        except GeoError:
            assert quick is None, text
            continue
        if quick is None:
            assert expected.time_zone_source == "polygon", text
            continue
        assert _without_clock(quick.row) == _without_clock(expected.as_dict()), text
        answered += 1
    assert answered > 100


def test_quick_ipv4_with_an_asn_database(testdata: Path) -> None:
    service = GeoService(
        city_db=testdata / "GeoIP2-City-Test.mmdb", asn_db=testdata / "GeoLite2-ASN-Test.mmdb"
    )
    text = "89.160.20.128"
    quick = service.quick_ipv4(text)
    assert quick is not None
    expected = service.lookup_ip(ipaddress.ip_address(text), query=text).as_dict()
    assert _without_clock(quick.row) == _without_clock(expected)
    assert (quick.row["asn"], quick.row["asn_org"]) == (29518, "Bredband2 AB")
    head, middle, tail = quick.json_parts
    clock = orjson.dumps(quick.row["utc_offset"]), orjson.dumps(quick.row["local_time"])
    assert head + clock[0] + middle + clock[1] + tail == orjson.dumps(quick.row)
