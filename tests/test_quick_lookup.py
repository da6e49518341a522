"""The lean path's quick IPv4 lookup and spliced JSON equal the regular lookup and rendering."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from ipgeo.answers import cached_answer
from ipgeo.geo import GeoError, GeoService
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
        row, zone = quick
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


def test_quick_ipv4_with_an_asn_database(testdata: Path) -> None:
    service = GeoService(
        city_db=testdata / "GeoIP2-City-Test.mmdb", asn_db=testdata / "GeoLite2-ASN-Test.mmdb"
    )
    text = "89.160.20.128"
    quick = service.quick_ipv4(text)
    assert quick is not None
    expected = service.lookup_ip(ipaddress.ip_address(text), query=text).as_dict()
    assert _without_clock(quick[0]) == _without_clock(expected)
    assert (quick[0]["asn"], quick[0]["asn_org"]) == (29518, "Bredband2 AB")


@pytest.mark.parametrize(
    "fields",
    [
        None,
        ("ip", "utc_offset", "local_time"),
        ("local_time", "utc_offset"),  # reversed: rendered from the fields instead
        ("utc_offset",),
        ("city", "local_time"),
    ],
)
def test_spliced_json_equals_rendering_the_fields(
    service: GeoService, fields: tuple[str, ...] | None
) -> None:
    for text in ("81.2.69.142", "8.8.8.8", "2a02:c7c::1"):
        result = service.lookup_ip(ipaddress.ip_address(text))
        row = result.as_dict(fields)
        zone = (result.time_zone, "database") if result.time_zone else None
        answer, body, _ = cached_answer(row, "json", zone)
        if fields is None and zone is not None:
            assert answer.json_parts is not None
        rendered, content_type = answer.rendered()
        assert content_type == "application/json"
        fresh = answer.fresh_row() if answer.row is not None else orjson.loads(body)
        assert orjson.loads(rendered) == fresh
        assert rendered == orjson.dumps(fresh)


def test_spliced_json_escapes_like_orjson() -> None:
    row = {"city": 'a "quoted" \\ name \x00', "utc_offset": "+01:00", "local_time": "x"}
    answer, _, _ = cached_answer(row, "json", ("Europe/Berlin", "database"))
    assert answer.json_parts is not None
    rendered, _ = answer.rendered()
    assert orjson.loads(rendered)["city"] == row["city"]
    assert rendered == orjson.dumps(answer.fresh_row())
