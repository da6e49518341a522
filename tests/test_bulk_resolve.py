"""The bulk engine's first sight of an address: parsing, walks, fragments equal the references."""

from __future__ import annotations

import csv
import io
import ipaddress
import random
import socket
from pathlib import Path

import maxminddb
import pytest

from ipgeo.bulk import Options, run
from ipgeo.bulk.resolver import Answer, Resolver, Rows, canonical_ips
from ipgeo.bulk.writers import RowWriter
from ipgeo.geo import FIELDS, GeoService
from ipgeo.geo.addresses import network_text, parse_address
from ipgeo.geo.database import bundled_city_db
from ipgeo.geo.queries import parse_ip
from ipgeo.geo.records import PlaceRecord
from ipgeo.geo.timezones import zone_details
from tests.test_bulk import _reference, _same

# /16s with many networks in the bundled database: most addresses in them have a record
_ALLOCATED = (0x2A02, 0x2A01, 0x2001, 0x2600, 0x2601, 0x2604, 0x2605, 0x2804, 0x2400, 0x2409)


def _zero_heavy_v6(rng: random.Random) -> ipaddress.IPv6Address:
    """A random IPv6 address with many zero groups (the cases RFC 5952 text is about)."""
    number = 0
    for _ in range(8):
        group = rng.choice([0, 0, 0, 1, 0xFFFF, rng.getrandbits(16), rng.getrandbits(8)])
        number = number << 16 | group
    return ipaddress.IPv6Address(number)


def _allocated_v6(rng: random.Random, count: int) -> list[int]:
    return [rng.choice(_ALLOCATED) << 112 | rng.getrandbits(112) for _ in range(count)]


def test_parse_address_equals_parse_ip() -> None:
    rng = random.Random(3)
    for _ in range(20000):
        ip = _zero_heavy_v6(rng)
        spellings = (
            str(ip),
            ip.exploded,
            str(ip).upper(),
            socket.inet_ntop(socket.AF_INET6, ip.packed),  # dotted forms for ::ffff:a.b.c.d
        )
        for text in spellings:
            expected = parse_ip(text)
            assert expected is not None
            assert parse_address(text) == (str(expected), expected.version, int(expected)), text
    for text in ("::ffff:1.2.3.4", " ::1", "1.2.3.4", "01.2.3.4", "fe80::1%eth0", "x", ""):
        expected = parse_ip(text)
        answer = None if expected is None else (str(expected), expected.version, int(expected))
        assert parse_address(text) == answer, text


def test_network_text_equals_ipaddress() -> None:
    rng = random.Random(4)
    for _ in range(20000):
        ip = _zero_heavy_v6(rng)
        prefix = rng.randrange(129)
        expected = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
        assert network_text(6, int(ip), prefix) == expected
    for number, prefix in ((0x0102_0304, 24), (0xFFFF_FFFF, 32), (0x0A00_0001, 0)):
        expected = str(ipaddress.ip_network(f"{ipaddress.IPv4Address(number)}/{prefix}", False))
        assert network_text(4, number, prefix) == expected


@pytest.mark.parametrize("count", [40, 3000])  # walked one by one, and with numpy
def test_located_ipv6_rows_equal_core_lookup(tmp_path: Path, count: int) -> None:
    service = GeoService()
    rng = random.Random(count)
    ips: list[str] = []
    with maxminddb.open_database(str(bundled_city_db())) as reader:
        while len(ips) < count:  # mostly addresses with a record, a few without
            ip = ipaddress.IPv6Address(_allocated_v6(rng, 1)[0])
            if reader.get(ip) is not None or rng.random() < 0.01:
                ips.append(str(ip))
    ips[::7] = [ipaddress.IPv6Address(ip).exploded for ip in ips[::7]]  # not canonical
    path = tmp_path / "v6.txt"
    path.write_text("\n".join(ips) + "\n")
    out = io.BytesIO()
    run(service, [path], Options(), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert [row["input"] for row in rows] == ips
    located = 0
    for ip, row in zip(ips, rows, strict=True):
        expected = _reference(service, ip)
        located += expected["error"] is None
        text = {key: "" if value is None else str(value) for key, value in expected.items()}
        text["country_eu"] = text["country_eu"].lower()
        assert _same(row, text), ip
    assert located > count // 2


def _csv_line(values: list[object]) -> bytes:
    values = ["true" if value is True else "false" if value is False else value for value in values]
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue().encode()


def test_record_cells_equal_csv_writer() -> None:
    writer = RowWriter(io.BytesIO(), "csv", ("source", "line", "input", *FIELDS, "error"))
    renderer = writer.renderer
    base = (
        "Europe",
        "EU",
        "Germany",
        "DE",
        True,
        "Deutschland, a",
        "DE",
        "Bayern",
        "BY",
        "München",
        "80331",
    )
    tail = (48.1374, 11.5755, 20, "Europe/Berlin")
    odd = ["a,b", 'say "hi"', "line\nbreak", "cr\rhere", "", " spaced ", "日本"]
    odd += ["50% {off}", "%s,%"]
    places = [(*base, *tail), (*base[:4], False, None, None, *base[7:], None, None, None, tail[3])]
    places += [(text, *base[1:], *tail) for text in odd]
    places += [(*base[:9], text, *base[10:], *tail) for text in odd]
    details = zone_details("Europe/Berlin", "database", renderer.now)
    assert details is not None
    zone = [details.name, details.source, details.utc_offset, details.local_time]
    for asn, asn_org in ((None, None), (3320, 'Deutsche, "Telekom"')):
        answers = [
            Answer(PlaceRecord(place), ("Europe/Berlin", "database"), asn, asn_org, None, 2)
            for place in places
        ]
        count = len(answers)
        rows = Rows(["1.2.3.4"] * count, [4] * count, ["1.2.3.0/24"] * count, list(range(count)))
        renderer.clear()
        tails = renderer.tails(answers, rows, ["1.2.3.4"] * count)
        for place, rendered in zip(places, tails, strict=True):
            values = ["1.2.3.4", "1.2.3.4", "1.2.3.4", 4, "1.2.3.0/24", None, *place[:-1]]
            expected = b"," + _csv_line([*values, *zone, asn, asn_org, None])
            assert rendered == expected, place


@pytest.mark.parametrize("leading", [("source", "line", "input"), ("line",), ()])
def test_error_tails_equal_csv_writer(leading: tuple[str, ...]) -> None:
    renderer = RowWriter(io.BytesIO(), "csv", (*leading, *FIELDS, "error")).renderer
    cases = [
        ("8.8.8.8", "8.8.8.8", 4, "not_found"),
        ("2001:0db8::1", "2001:db8::1", 6, "reserved_address"),
        ("a,b", "1.2.3.4", 4, "not_found"),  # not an IP text, but quoted like one would be
        ('"x"', "1.2.3.4", 4, "not_found"),
    ]
    for text, ip, version, error in cases:
        answer = Answer(None, None, None, None, error, 1)
        renderer.clear()
        tail = renderer.tails([answer], Rows([ip], [version], [None], [0]), [text])[0]
        row = (ip, ip, version) + (None,) * (len(FIELDS) - 3)
        values = [*(([text]) if "input" in leading else []), *row, error]
        lead = b"," if leading else b""
        assert tail == lead + _csv_line(values), text


@pytest.mark.parametrize(
    ("texts", "ips", "positions", "packed"),
    [
        (["81.2.69.142", "8.8.8.8"], ["81.2.69.142", "8.8.8.8"], [0, 1], "81.2.69.142 8.8.8.8"),
        (
            ["81.2.69.142", "2001:DB8::1", "8.8.8.8", "::ffff:1.2.3.4"],
            ["81.2.69.142", "2001:db8::1", "8.8.8.8", "1.2.3.4"],
            [0, 1, 2, 3],
            "81.2.69.142 8.8.8.8",
        ),
        (
            ["81.2.69.142", "nope:", "8.8.8.8"],
            ["81.2.69.142", "8.8.8.8"],
            [0, 2],
            "81.2.69.142 8.8.8.8",
        ),
        # a dotted text that is no IPv4 address: every text one by one
        (["999.1.1.1", "81.2.69.142", "::1"], ["81.2.69.142", "::1"], [1, 2], None),
        (["www.example.com"], [], [], None),
        ([], [], [], None),
    ],
)
def test_resolve_texts_takes_the_ip_addresses_in_order(
    texts: list[str], ips: list[str], positions: list[int], packed: str | None
) -> None:
    resolver = Resolver(GeoService(), None)
    found = resolver.resolve_texts(texts)
    assert found.rows.ips == ips
    assert list(found.positions) == positions
    expected = b"".join(socket.inet_aton(ip) for ip in packed.split()) if packed else None
    assert found.packed_v4 == expected
    reference = resolver.resolve([a for a in map(parse_address, texts) if a is not None])
    assert found.rows == reference  # the same rows one by one
    canonical, at = canonical_ips(texts)  # the same IPs without looking them up
    assert (canonical, list(at)) == (ips, positions)


def test_distinct_ips_count_ipv4_mapped_texts_once(tmp_path: Path) -> None:
    path = tmp_path / "ips.txt"
    path.write_text("81.2.69.142\n::ffff:81.2.69.142\n2001:db8::1\n8.8.8.8\n::ffff:1.2.3.4\n")
    summary = run(GeoService(), [path], Options(), io.BytesIO())
    assert summary.distinct_ips == 4  # 81.2.69.142, 2001:db8::1, 8.8.8.8, 1.2.3.4
