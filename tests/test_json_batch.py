"""The batch endpoint (the kernel's batch renderer) gives byte for byte the per-query answers."""

from __future__ import annotations

import ipaddress
import random
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import maxminddb
import numpy as np
import orjson
import pytest
from flask import Flask

from ipgeo.dbupdate.install import install
from ipgeo.formats import to_json
from ipgeo.geo import GeoError, GeoService
from ipgeo.geo.queries import reserved_reason
from ipgeo.geo.reserved import ReservedFilter, reserved_spans_v4
from ipgeo.settings import Settings
from ipgeo.web.app import create_app
from ipgeo.web.errors import ApiError
from tests.mmdbgen import city_record, write_mmdb
from tests.updateserver import write_versioned_mmdb

FIELD_CHOICES = [
    None,
    "ip,country_iso",
    "network",
    "local_time,city,ip,utc_offset,query,addresses",
    "asn_org,time_zone_source,asn,hostname,version",
    "latitude",
]
ODD_QUERIES = [
    " 81.2.69.142 ", "10.0.0.1", "127.0.0.1", "192.0.2.7", "224.1.1.1", "255.255.255.255",
    "0.0.0.0", "01.2.3.4", "1.2.3", "::ffff:8.8.8.8", "2001:218::1", "2a02:c7c::1", "::1",
    "example.test", "bad!", "", "8.8.8.8\u0000", "8.8.8.8 ", "100.64.0.1", "192.88.99.1",
]  # fmt: skip


def per_query(
    service: GeoService, queries: list[str], fields: str | None, lang: str | None
) -> bytes:
    """What the normal per-query path answers, as the batch endpoint's JSON."""
    selected = tuple(dict.fromkeys(fields.split(","))) if fields else None
    answers: list[dict[str, Any]] = []
    for query in queries:
        try:
            answers.append(service.lookup(query, lang=lang).as_dict(selected))
        except GeoError as exc:
            error = ApiError.from_geo(exc)
            answers.append(
                {"query": query, "error": {"code": error.code, "message": error.message}}
            )
    return to_json(answers)


def assert_batch_equals_per_query(
    app: Flask, queries: list[str], fields: str | None = None, lang: str | None = None
) -> None:
    """POST the batch and compare with the per-query answers of the same second."""
    for start in range(0, len(queries), 1000):
        _assert_chunk(app, queries[start : start + 1000], fields, lang)


def _assert_chunk(app: Flask, queries: list[str], fields: str | None, lang: str | None) -> None:
    service: GeoService = app.extensions["ipgeo.geo"]
    params = {key: value for key, value in (("fields", fields), ("lang", lang)) if value}
    client = app.test_client()
    for _ in range(5):  # a clock second may tick between the two: then the times differ
        before = per_query(service, queries, fields, lang)
        response = client.post("/api/v1/batch", query_string=params, data=orjson.dumps(queries))
        after = per_query(service, queries, fields, lang)
        if before == after:
            break
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.data == before


def random_ipv4(rng: random.Random, count: int) -> list[str]:
    return [socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big")) for _ in range(count)]


def test_random_addresses_on_the_bundled_database(app: Flask) -> None:
    rng = random.Random(10)
    queries = random_ipv4(rng, 3000) + ODD_QUERIES
    rng.shuffle(queries)
    queries += queries[:50]  # repeats
    assert_batch_equals_per_query(app, queries)
    for fields in FIELD_CHOICES[1:]:
        assert_batch_equals_per_query(app, random_ipv4(rng, 300) + ODD_QUERIES, fields)
    for lang in ("de", "ja", "pt-BR", "xx"):
        assert_batch_equals_per_query(app, random_ipv4(rng, 300), "country,city,region", lang)
    # Only addresses the fast path does not answer, and an empty batch.
    assert_batch_equals_per_query(app, ODD_QUERIES)
    assert app.test_client().post("/api/v1/batch", data=b"[]").data == b"[]"


def _mmdb_addresses(path: Path, rng: random.Random) -> list[str]:
    """The first, last and a random address of every IPv4 network of a database."""
    addresses: list[str] = []
    with maxminddb.open_database(str(path)) as reader:
        for network, _ in reader:
            if network.version == 6:
                if network.prefixlen < 96 or int(network.network_address) >> 32 not in (0, 0xFFFF):
                    continue
                low = int(network.network_address) & 0xFFFFFFFF
                size = 1 << (128 - network.prefixlen)
            else:
                low, size = int(network.network_address), network.num_addresses
            for number in (low, low + size - 1, low + rng.randrange(size)):
                addresses.append(str(ipaddress.IPv4Address(number)))
    return addresses


@pytest.mark.parametrize(
    ("city", "asn"),
    [
        ("GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb"),
        ("GeoLite2-City-Test.mmdb", None),
        ("GeoLite2-Country-Test.mmdb", "GeoIP2-ISP-Test.mmdb"),
    ],
)
def test_maxmind_test_databases(
    make_settings: Callable[..., Settings], testdata: Path, city: str, asn: str | None
) -> None:
    env = {"IPGEO_CITY_DB": str(testdata / city)}
    if asn:
        env["IPGEO_ASN_DB"] = str(testdata / asn)
    app = create_app(make_settings(**env))
    rng = random.Random(city)
    queries = _mmdb_addresses(testdata / city, rng)
    if asn:
        queries += _mmdb_addresses(testdata / asn, rng)
    queries += random_ipv4(rng, 500) + ODD_QUERIES
    assert_batch_equals_per_query(app, queries)
    assert_batch_equals_per_query(app, queries, "asn,ip,network,time_zone,local_time", "de")


def test_time_zone_fill_in_from_polygons(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """A database without time zones: zones come from the polygons, as per query."""
    path = write_mmdb(
        tmp_path / "dbip.mmdb",
        {
            "81.2.69.0/24": city_record("United Kingdom", "GB", "London", 51.5, -0.12),
            "89.160.20.0/24": city_record("Sweden", "SE", "Linköping 100% {x} \\u0000", 58.4, 15.6),
            "2.125.160.0/20": city_record("Nowhere", "XX", "Sea", 0.0, -160.0),
            "1.0.0.0/24": {"country": {"iso_code": "AU", "names": {"en": "Australia"}}},
        },
    )
    app = create_app(make_settings(IPGEO_CITY_DB=str(path)))
    rng = random.Random(3)
    queries = [f"81.2.69.{rng.randrange(256)}" for _ in range(20)]
    queries += [f"89.160.20.{rng.randrange(256)}" for _ in range(20)] + ["2.125.170.1", "1.0.0.9"]
    queries += random_ipv4(rng, 50)
    assert_batch_equals_per_query(app, queries)
    body = app.test_client().post("/api/v1/batch", json=["81.2.69.1"]).get_json()
    assert body[0]["time_zone"] == "Europe/London" and body[0]["time_zone_source"] == "polygon"


def test_a_database_reload_shows_at_once(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    city_file = write_versioned_mmdb(tmp_path / "city.mmdb", "Version 0", 1_700_000_000)
    app = create_app(make_settings(IPGEO_CITY_DB=str(city_file), IPGEO_DB_RELOAD_INTERVAL="3600"))
    client = app.test_client()
    queries = ["81.2.69.1", "81.2.69.200"]
    assert [row["city"] for row in client.post("/api/v1/batch", json=queries).get_json()] == [
        "Version 0",
        "Version 0",
    ]
    fresh = write_versioned_mmdb(tmp_path / ".new.mmdb", "Version 1", 1_700_086_400)
    install(fresh, city_file)
    app.extensions["ipgeo.geo"].request_reload()  # what SIGHUP or the updater's signal does
    assert [row["city"] for row in client.post("/api/v1/batch", json=queries).get_json()] == [
        "Version 1",
        "Version 1",
    ]
    assert_batch_equals_per_query(app, [*queries, "81.2.68.1", "8.8.8.8"])


def test_reserved_spans_equal_reserved_reason() -> None:
    spans = reserved_spans_v4()
    assert spans is not None
    starts, ends = spans
    rng = random.Random(7)
    numbers = [rng.getrandbits(32) for _ in range(20000)]
    for start, end in zip(starts, ends, strict=True):  # both sides of every edge
        numbers += [start - 1, start, end, end + 1]
    for number in numbers:
        if not 0 <= number < 1 << 32:
            continue
        inside = any(start <= number <= end for start, end in zip(starts, ends, strict=True))
        assert inside == (reserved_reason(ipaddress.IPv4Address(number)) is not None), number
    valid = np.array([number for number in numbers if 0 <= number < 1 << 32], dtype=np.int64)
    expected = [reserved_reason(ipaddress.IPv4Address(n)) is not None for n in valid.tolist()]
    assert ReservedFilter().reserved_v4(valid).tolist() == expected


def test_concurrent_batches_get_their_own_answers(app: Flask) -> None:
    service: GeoService = app.extensions["ipgeo.geo"]
    fields = "ip,network,city,country_iso,asn"
    batches = [random_ipv4(random.Random(seed), 400) for seed in range(8)]
    expected = [per_query(service, queries, fields, None) for queries in batches]
    results: dict[int, bytes] = {}

    def post(index: int) -> None:
        client = app.test_client()
        response = client.post(f"/api/v1/batch?fields={fields}", json=batches[index])
        results[index] = response.data

    threads = [threading.Thread(target=post, args=(index,)) for index in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [results[index] for index in range(len(batches))] == expected
