"""The lookup kernel: one tree walker (scalar and arrays) and one record cache per generation."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import maxminddb
import mmdb_writer
import numpy as np
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from ipgeo.geo import GeoService
from ipgeo.geo.batch import batch_json
from ipgeo.geo.database import PLACE_VALUES, bundled_city_db
from ipgeo.geo.generation import Generation
from tests.mmdbgen import city_record

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
CITY_AT = PLACE_VALUES.index("city")


def _write_layout(path: Path, record_size: int, ip_version: int, mp: pytest.MonkeyPatch) -> None:
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

    mp.setattr(mmdb_writer.TreeWriter, "_adjust_record_size", forced)
    for cidr, record in networks.items():
        writer.insert_network(IPSet([cidr]), record)
    writer.to_db_file(str(path))


def _addresses(rng: random.Random, ip_version: int) -> list[IPAddress]:
    found: list[IPAddress] = [ipaddress.IPv4Address(text) for text in ("0.0.0.0", "1.0.0.0")]
    found += [ipaddress.IPv4Address(n) for n in (2**32 - 1, 0x51024500, 0x08080808)]
    found += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)]
    found += [ipaddress.IPv4Address(rng.choice((1, 8, 81)) << 24 | rng.getrandbits(24))]
    if ip_version == 6:
        found += [ipaddress.IPv6Address(text) for text in ("::", "2001:4860::1", "ffff::")]
        found += [ipaddress.IPv6Address(0x2 << 124 | rng.getrandbits(124)) for _ in range(800)]
        found += [ipaddress.IPv6Address(0x20014860 << 96 | rng.getrandbits(96)) for _ in range(50)]
    return found


def _assert_walks_like_maxminddb(path: Path, addresses: list[IPAddress]) -> None:
    generation = Generation(path, None, 1)
    walker = generation.city_walker
    with maxminddb.open_database(str(path)) as reader:
        ip_version = reader.metadata().ip_version
        for ip in addresses:
            if ip.version == 6 and ip_version == 4:
                assert walker.find(6, int(ip))[0] == walker.node_count
                continue
            record, prefix = reader.get_with_prefix_len(ip)
            pointer, found_prefix = walker.find(ip.version, int(ip))
            assert (pointer > walker.node_count) == (record is not None), ip
            assert found_prefix == prefix, ip
            if record is not None:
                place = generation.place(pointer, ip.version, int(ip), ("en",))
                assert place is not None and place.values[CITY_AT] == record.get("city", {}).get(
                    "names", {}
                ).get("en"), ip
    v4 = [int(ip) for ip in addresses if ip.version == 4]
    pointers, prefixes = walker.walk_v4(np.array(v4, dtype=np.int64))
    assert list(zip(pointers.tolist(), prefixes.tolist(), strict=True)) == [
        walker.find(4, number) for number in v4
    ]
    v6 = [int(ip) for ip in addresses if ip.version == 6]
    pointers, prefixes = walker.walk_v6(v6)
    assert list(zip(pointers.tolist(), prefixes.tolist(), strict=True)) == [
        walker.find(6, number) for number in v6
    ]
    generation.close()


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_the_walker_finds_what_maxminddb_finds_in_every_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, record_size: int, ip_version: int
) -> None:
    path = tmp_path / "city.mmdb"
    _write_layout(path, record_size, ip_version, monkeypatch)
    _assert_walks_like_maxminddb(path, _addresses(random.Random(record_size), ip_version))


@pytest.mark.parametrize(
    "name", ["GeoIP2-City-Test.mmdb", "GeoLite2-ASN-Test.mmdb", "GeoLite2-Country-Test.mmdb"]
)
def test_the_walker_finds_what_maxminddb_finds_in_maxmind_files(testdata: Path, name: str) -> None:
    rng = random.Random(11)
    addresses = _addresses(rng, 6)
    with maxminddb.open_database(str(testdata / name)) as reader:  # every network's edges
        for network, _ in reader:
            addresses += [network.network_address, network.broadcast_address]
    _assert_walks_like_maxminddb(testdata / name, addresses)


def test_the_walker_finds_what_maxminddb_finds_in_the_bundled_file() -> None:
    _assert_walks_like_maxminddb(bundled_city_db(), _addresses(random.Random(3), 6))


def test_one_record_is_decoded_once_per_generation_and_language(tmp_path: Path) -> None:
    service = GeoService()
    current = service.current()
    london = [ipaddress.IPv4Address(0x51024580 + offset) for offset in range(16)]
    for ip in london:
        service.lookup_ip(ip)
        service.lookup_ip(ip, lang="de")
    records = current.records._places
    assert set(records) == {("en",), ("de", "en")}
    assert [len(by_pointer) for by_pointer in records.values()] == [1, 1]
    place = next(iter(records[("en",)].values()))
    assert place is not None
    assert place.rendering("test", lambda record: object()) is place.rendering("test", object)


def test_a_reload_serves_a_new_generation_with_its_own_records(tmp_path: Path) -> None:
    city = tmp_path / "city.mmdb"
    city.write_bytes(bundled_city_db().read_bytes())
    service = GeoService(city_db=city)
    first = service.current()
    before = service.lookup("81.2.69.142").city
    copy = tmp_path / "copy.mmdb"
    copy.write_bytes(city.read_bytes())
    copy.replace(city)
    service.request_reload()
    second = service.current()
    assert second is not first and second.number == first.number + 1
    assert not second.records._places
    assert service.lookup("81.2.69.142").city == before
    assert second.city.signature != first.city.signature


def test_a_full_record_cache_forgets_the_least_recently_used_records() -> None:
    service = GeoService(record_cache_size=8)
    current = service.current()
    by_pointer: dict[int, str] = {}  # 11 addresses of as many records
    rng = random.Random(15)
    while len(by_pointer) < 11:
        number = rng.randrange(1 << 24, 224 << 24)
        pointer = current.find(4, number)[0]
        if pointer > current.city_walker.node_count and not service.reserved.is_reserved_number(
            4, number
        ):
            by_pointer.setdefault(pointer, str(ipaddress.IPv4Address(number)))
    pointers, addresses = list(by_pointer), list(by_pointer.values())
    for text in addresses[:8]:
        service.lookup(text)
    service.lookup(addresses[0])  # the first record is used again: it is now the most recent
    batch_json(service, [addresses[1]], None, None)  # the second one, by the batch renderer
    for text in addresses[8:]:
        service.lookup(text)
    cached = current.records._places[("en",)]
    assert len(cached) <= 8
    assert pointers[0] in cached and pointers[1] in cached
    assert pointers[2] not in cached  # the least recently used one went
    assert all(pointer in cached for pointer in pointers[8:])


def test_a_full_record_cache_keeps_the_record_decoded_last() -> None:
    service = GeoService(record_cache_size=8)
    current = service.current()
    addresses = [f"{first}.1.2.3" for first in (1, 2, 3, 5, 8, 9, 12, 13, 14, 15, 16)]
    for text in addresses:
        service.lookup(text)
    cached = current.records._places[("en",)]
    assert len(cached) <= 8
    newest = current.find(4, int(ipaddress.IPv4Address(addresses[-1])))[0]
    assert newest in cached  # the last decoded record survived the eviction
