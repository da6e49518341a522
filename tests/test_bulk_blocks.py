"""The block path (``ipgeo.bulk.blocks``) gives the rows and summary of the line-by-line path."""

from __future__ import annotations

import io
import random
import re
from typing import Any

import numpy as np
import pytest

from ipgeo.bulk import Options, run, sources
from ipgeo.bulk.blocks import KeyTable, numbered
from ipgeo.bulk.keyer import Keyer
from ipgeo.geo import GeoService
from tests.loggen import combined_log, public_ips

_CLOCK = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")  # local_time, per second
ODD_LOG_LINES = [
    "",
    "# a comment",
    '\t8.8.8.8 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1',
    ' 8.8.8.8 - - [10/Oct/2024:13:55:36 +0000] "GET / HTTP/1.1" 200 1',
    "8.8.8.8\r - - x",
    "8.8.8.8",  # no space at all
    "8.8.8.8\t- - x",
    "8.8.8.8  - x",
    "dead beef - - x",
    "2001:DB8:0:0:8:800:200C:417A - - x",
    "2a02:ff0::1 - - x",
    "::ffff:81.2.69.160 - - x",
    "0000:0000:0000:0000:0000:ffff:81.2.69.160 - - x",  # 45 characters
    "8.8.8.8\x00 - - x",
    "256.1.1.1 - - x",
    "#8.8.8.8 - - x",
    "1.2.3.4/24 - - x",
    "81.2.69.160-81.2.69.170 - - x",
]


@pytest.fixture(scope="module")
def service() -> GeoService:
    return GeoService()


def _enrich(service: GeoService, data: bytes, options: Options) -> tuple[bytes, dict[str, Any]]:
    out = io.BytesIO()
    summary = run(service, [("in.log", io.BytesIO(data))], options, out).to_dict()
    del summary["seconds"]
    return _CLOCK.sub(b"T", out.getvalue()), summary


def _record_results(patch: pytest.MonkeyPatch, owner: type, name: str) -> list[bool]:
    """Patch the method ``owner.name`` to record, call by call, whether it returned a value."""
    results: list[bool] = []
    real = getattr(owner, name)

    def recording(self: Any, *args: Any) -> Any:
        found = real(self, *args)
        results.append(found is not None)
        return found

    patch.setattr(owner, name, recording)
    return results


def _compare(
    service: GeoService,
    patch: pytest.MonkeyPatch,
    data: bytes,
    options: Options,
    blocks_wanted: int = 1,
) -> tuple[bytes, dict[str, Any]]:
    """Run with and without the block path; the same output and summary; enough blocks taken."""
    with patch.context() as inner:
        taken = _record_results(inner, KeyTable, "key")
        fast = _enrich(service, data, options)
    with patch.context() as inner:
        inner.setattr(KeyTable, "key", lambda *args: None)
        slow = _enrich(service, data, options)
    assert fast[0] == slow[0]
    assert fast[1] == slow[1]
    assert sum(taken) >= blocks_wanted, taken
    return fast


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "CHUNK_SIZE", 2048)  # many blocks from a small input


def _clean_log(lines: int, distinct: int, seed: int = 7) -> list[str]:
    return combined_log(random.Random(seed), lines, distinct)[0]


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(
    "options",
    [
        Options(),
        Options("ndjson"),
        Options("csv", fields=("ip", "country_iso", "city")),
        Options("ndjson", fields=("line", "ip", "time_zone")),
        Options(unique=True),
        Options(cache_size=40),  # the tables are emptied again and again
        Options(unique=True, cache_size=40),
    ],
    ids=["csv", "ndjson", "csv-fields", "ndjson-fields", "unique", "small-cache", "unique-small"],
)
def test_clean_and_odd_blocks_as_line_by_line(
    service: GeoService, monkeypatch: pytest.MonkeyPatch, options: Options
) -> None:
    lines = _clean_log(3000, 300)
    rng = random.Random(3)
    for odd in ODD_LOG_LINES:  # odd lines in some blocks, the others clean
        lines.insert(rng.randrange(len(lines)), odd)
    data = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
    _, summary = _compare(service, monkeypatch, data, options, blocks_wanted=30)
    assert summary["lines"] == len(lines)
    assert summary["unparseable"] + summary["skipped"] + summary["valid"] == len(lines)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("odd", ODD_LOG_LINES)
def test_each_odd_line_alone(
    service: GeoService, monkeypatch: pytest.MonkeyPatch, odd: str
) -> None:
    lines = _clean_log(400, 50)
    lines.insert(200, odd)
    data = ("\n".join(lines) + "\n").encode()
    _compare(service, monkeypatch, data, Options(), blocks_wanted=10)


@pytest.mark.usefixtures("small_chunks")
def test_ip_lists_and_odd_list_lines(service: GeoService, monkeypatch: pytest.MonkeyPatch) -> None:
    ips = public_ips(random.Random(11), 800) * 2
    odd = ["8.8.8.8 ", " 8.8.8.8", "8.8.8.8 # home", "8.8.8.8\r", "# note", "", "81.2.69.0/28",
           "81.2.69.160-81.2.69.163", "dead", "2A02:FF0::1", "8.8.8.8\x00"]  # fmt: skip
    rng = random.Random(5)
    for line in odd:
        ips.insert(rng.randrange(len(ips)), line)
    data = ("\n".join(ips) + "\n").encode()
    for options in (Options(), Options(input_format="ips"), Options(unique=True)):
        _compare(service, monkeypatch, data, options, blocks_wanted=5)


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize("options", [Options(), Options("ndjson"), Options(unique=True)])
def test_blocks_with_blank_comment_and_bad_lines_are_keyed_as_blocks(
    service: GeoService, monkeypatch: pytest.MonkeyPatch, options: Options
) -> None:
    # lines a real log has now and then: each block has some, and is still keyed as a block
    lines = _clean_log(3000, 300)
    junk = ["", "# rotated", "www.example.com - - x", "999.1.1.1 - - x", "- - - x", "dead - - x"]
    for position in range(3, len(lines), 23):
        lines.insert(position, junk[position % len(junk)])
    data = ("\n".join(lines) + "\n").encode()
    results = _record_results(monkeypatch, Keyer, "key_block")
    _, summary = _compare(service, monkeypatch, data, options, blocks_wanted=30)
    with_blocks = results[: len(results) // 2]  # (then the run without the block path)
    assert sum(with_blocks) == len(with_blocks) > 0, with_blocks
    assert summary["unparseable"] == sum(1 for line in lines if line in junk[2:])
    assert summary["skipped"] == sum(1 for line in lines if line in junk[:2])


def test_last_line_without_newline_and_short_blocks(
    service: GeoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = "\n".join(_clean_log(50, 10)).encode()  # no final newline
    _compare(service, monkeypatch, data, Options())
    _compare(service, monkeypatch, b"8.8.8.8\n81.2.69.160\n", Options(input_format="ips"))


@pytest.mark.usefixtures("small_chunks")
def test_overlong_lines(service: GeoService, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = _clean_log(300, 30)
    lines.insert(100, "8.8.8.8 " + "x" * 600)
    lines.insert(200, "8.8.8.8 " + "y" * 5000)
    data = ("\n".join(lines) + "\n").encode()
    _, summary = _compare(service, monkeypatch, data, Options(max_line=500), blocks_wanted=5)
    assert summary["unparseable"] == 2


@pytest.mark.usefixtures("small_chunks")
@pytest.mark.parametrize(
    "mix",
    [[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]],
    ids=["one-hash", "first-word", "sum"],
)
def test_hash_collisions_never_mix_keys(
    service: GeoService, monkeypatch: pytest.MonkeyPatch, mix: list[int]
) -> None:
    # With a weak hash, different keys share hashes: within a block, or with the table.
    monkeypatch.setattr("ipgeo.bulk.blocks._MIX", [np.uint64(value) for value in mix])
    lines = _clean_log(2000, 400)
    lines += ["214.207.94.152 - - x", "214.207.9.1 - - x", "214.207.94.15 - - x"] * 20
    data = ("\n".join(lines) + "\n").encode()
    _compare(service, monkeypatch, data, Options(), blocks_wanted=0)
    _compare(service, monkeypatch, data, Options(unique=True), blocks_wanted=0)


@pytest.mark.usefixtures("small_chunks")
def test_keys_whose_slot_is_taken_spill(
    service: GeoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ipgeo.bulk.blocks._SHIFT", np.uint64(62))  # four slots
    lines = _clean_log(3000, 500)
    data = ("\n".join(lines) + "\n").encode()
    _compare(service, monkeypatch, data, Options(), blocks_wanted=30)
    _compare(service, monkeypatch, data, Options(cache_size=60), blocks_wanted=30)


def test_key_table_ids_and_hits() -> None:
    table = KeyTable()
    keyed = table.key(b"8.8.8.8 a\n1.1.1.1 b\n8.8.8.8 c\n", 29, False, 1000)
    assert keyed is not None
    assert keyed.new_keys in ([b"8.8.8.8", b"1.1.1.1"], [b"1.1.1.1", b"8.8.8.8"])
    ips = [key.decode() for key in keyed.new_keys]
    facets = [{"8.8.8.8": 5, "1.1.1.1": 6}[ip] for ip in ips]
    ids = table.add_new(keyed, ips, facets, [b",a", b",b"])
    assert ids[0] == ids[2] != ids[1]
    table.count(ids)
    again = table.key(b"1.1.1.1 x\n8.8.8.8 y", 19, False, 1000)
    assert again is not None and again.new_keys == []
    table.count(again.ids)
    facet_hits, hits, hit_ips = table.take_hits()
    assert dict(
        zip(hit_ips, zip(facet_hits.tolist(), hits.tolist(), strict=True), strict=True)
    ) == {
        "8.8.8.8": (5, 3),
        "1.1.1.1": (6, 2),
    }
    assert table.take_hits()[2] == []
    table.clear()
    assert len(table) == 0
    fresh = table.key(b"8.8.8.8 a", 9, False, 1000)
    assert fresh is not None and fresh.new_keys == [b"8.8.8.8"]


def test_key_table_keeps_the_keys_it_is_told_to() -> None:
    table = KeyTable()
    block = b"".join(b"10.0.0.%d a\n" % number for number in range(100))
    keyed = table.key(block, len(block) - 1, False, 1000)
    assert keyed is not None
    ips = [key.decode() for key in keyed.new_keys]
    table.add_new(keyed, ips, list(range(100)), [ip.encode() for ip in ips])
    kept = np.array([3, 50, 99])
    table.keep(kept)
    assert len(table) == 3 and table.ips == [ips[3], ips[50], ips[99]]
    again = table.key(block, len(block) - 1, False, 1000)
    assert again is not None and len(again.new_keys) == 97
    known = again.ids[again.ids >= 0]
    assert table.tails[known].tolist() == [ips[3].encode(), ips[50].encode(), ips[99].encode()]
    assert table.facets[known].tolist() == [3, 50, 99]


@pytest.mark.parametrize(
    ("first", "count"), [(1, 12), (95, 10), (9_990, 25), (99_999_990, 20), (123_456_789_012, 3)]
)
def test_numbered(first: int, count: int) -> None:
    numbers = range(first, first + count)
    assert numbered(b"in.log,", b"", first, count) == [b"in.log,%d" % n for n in numbers]
    assert numbered(b'{"line":', b",", first, count) == [b'{"line":%d,' % n for n in numbers]


def test_malloc_keeps_freed_memory_on_glibc() -> None:
    import platform

    from ipgeo.bulk.malloc import keep_freed_memory

    expected = platform.libc_ver()[0] == "glibc"
    assert keep_freed_memory() is expected
