"""The bulk engine: every looked-up row equals ``GeoService.lookup_ip``; counts add up."""

from __future__ import annotations

import csv
import gc
import gzip
import io
import ipaddress
import random
from collections import Counter
from pathlib import Path
from typing import Any

import maxminddb
import orjson
import pytest

from ipgeo.bulk import BulkError, Cancelled, Options, Progress, run
from ipgeo.bulk.bulk_run import BulkRun, NewKeys
from ipgeo.bulk.keyer import Keyer
from ipgeo.bulk.resolver import Resolver, TextRows
from ipgeo.geo import FIELDS, GeoError, GeoService
from ipgeo.geo.queries import parse_ip, reserved_reason
from ipgeo.geo.reserved import ReservedFilter, _candidate_networks
from tests.loggen import combined_log, public_ips

CLOCK_FIELDS = ("local_time",)  # depends on the second the row was made


@pytest.fixture(scope="module")
def service() -> GeoService:
    return GeoService()  # the bundled GeoLite2 City database


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str | None]]:
    lines, clients = combined_log(random.Random(5), 6000, 1500, bad_every=997)
    lines.insert(100, "")
    clients.insert(100, None)
    path = tmp_path_factory.mktemp("logs") / "access.log"
    path.write_text("\n".join(lines) + "\n")
    return path, clients


def _reference(service: GeoService, ip: str) -> dict[str, Any]:
    address = parse_ip(ip)
    assert address is not None
    try:
        row = service.lookup_ip(address).as_dict()
        row["error"] = None
    except GeoError as exc:
        row = dict.fromkeys(FIELDS)
        row.update(ip=str(address), query=str(address), version=address.version, error=exc.code)
    return row


def _same(row: dict[str, Any], expected: dict[str, Any]) -> bool:
    keys = [key for key in expected if key not in CLOCK_FIELDS]
    return {key: row[key] for key in keys} == {key: expected[key] for key in keys}


def _bulk_rows(service: GeoService, ips: list[str]) -> list[dict[str, Any]]:
    """The per-line rows of ``ips`` from the bulk engine (an IP list, NDJSON)."""
    data = io.BytesIO(("\n".join(ips) + "\n").encode())
    out = io.BytesIO()
    run(service, [("ips", data)], Options(output_format="ndjson", input_format="ips"), out)
    return _ndjson(out.getvalue())


def _ndjson(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_per_line_log_rows_equal_core_lookup(
    service: GeoService, log_file: tuple[Path, list[str | None]]
) -> None:
    path, clients = log_file
    out = io.BytesIO()
    summary = run(service, [path], Options(output_format="ndjson"), out)
    rows = _ndjson(out.getvalue())
    expected_lines = [number for number, ip in enumerate(clients, 1) if ip is not None]
    assert [row["line"] for row in rows] == expected_lines  # one row per valid line, in order
    assert all(row["source"] == str(path) for row in rows)
    assert summary.input_formats == {str(path): "log"}
    for row, number in zip(rows, expected_lines, strict=True):
        ip = clients[number - 1]
        assert ip is not None and row["input"] == ip
        expected = _reference(service, ip)
        assert _same(row, expected), (ip, row, expected)
    errors = Counter(row["error"] for row in rows)
    assert errors["reserved_address"] > 0 and errors[None] > 0
    # the summary adds up
    assert summary.lines == len(clients)
    assert summary.lines == summary.valid + summary.skipped + summary.unparseable
    assert summary.valid == len(rows) == summary.rows
    assert summary.valid == summary.located + summary.reserved + summary.not_found
    assert summary.reserved == errors["reserved_address"]
    assert summary.not_found == errors["not_found"]
    assert summary.distinct_ips == len({row["ip"] for row in rows})
    assert summary.skipped == 1
    assert summary.unparseable == sum(1 for ip in clients if ip is None) - 1
    countries = Counter(row["country_iso"] for row in rows if row["country_iso"])
    top = summary.top["countries"]
    assert [(item["key"], item["count"]) for item in top] == countries.most_common(10)
    assert top[0]["share"] == round(countries.most_common(1)[0][1] / summary.located, 4)


def test_unique_rows_have_hits(
    service: GeoService, log_file: tuple[Path, list[str | None]]
) -> None:
    path, clients = log_file
    out = io.BytesIO()
    summary = run(service, [path], Options(output_format="csv", unique=True), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    valid = [str(parse_ip(ip)) for ip in clients if ip is not None]
    assert [row["ip"] for row in rows] == list(dict.fromkeys(valid))  # first-seen order
    assert {row["ip"]: int(row["hits"]) for row in rows} == Counter(valid)
    assert summary.distinct_ips == len(rows)
    assert sum(int(row["hits"]) for row in rows) == summary.valid
    assert "line" not in rows[0] and "hits" in rows[0]
    # the summary counts what the rows say, as a per-line run of the same file does
    per_line = run(service, [path], Options(), io.BytesIO())
    counted = ("valid", "located", "reserved", "not_found", "distinct_ips", "top")
    assert {name: getattr(summary, name) for name in counted} == {
        name: getattr(per_line, name) for name in counted
    }
    errors = Counter(row["error"] for row in rows for _ in range(int(row["hits"])))
    assert (summary.reserved, summary.not_found) == (
        errors["reserved_address"],
        errors["not_found"],
    )


def test_unique_runs_look_each_address_up_once(
    service: GeoService, log_file: tuple[Path, list[str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up: list[str] = []
    resolve_texts = Resolver.resolve_texts

    def counting(self: Resolver, texts: list[str]) -> TextRows:
        looked_up.extend(texts)
        return resolve_texts(self, texts)

    monkeypatch.setattr(Resolver, "resolve_texts", counting)
    path, _ = log_file
    summary = run(service, [path], Options(unique=True), io.BytesIO())
    assert len(looked_up) == len(set(looked_up)) == summary.distinct_ips  # when written


def test_random_addresses_equal_core_lookup(service: GeoService) -> None:
    rng = random.Random(11)
    ips = [*public_ips(rng, 4000, v6_share=0.3), "10.0.0.1", "::1", "100.64.1.1", "192.0.0.9"]
    for ip, row in zip(ips, _bulk_rows(service, ips), strict=True):
        assert _same(row, _reference(service, ip)), ip


@pytest.mark.parametrize("record_size", [24, 28, 32])
@pytest.mark.parametrize("ip_version", [4, 6])
def test_search_tree_walk_for_every_record_size(
    tmp_path: Path, record_size: int, ip_version: int
) -> None:
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    class Writer(MMDBWriter):  # type: ignore[misc]
        def _adjust_record_size(self) -> None:
            self.record_size = record_size
            self.data_offset = self.record_size * 2 / 8 * self._node_counter

    writer = Writer(
        ip_version=ip_version, database_type="GeoIP2-City", ipv4_compatible=ip_version == 6
    )
    networks = {
        "81.2.69.0/24": ("GB", "London"),
        "81.2.70.0/25": ("GB", "Leeds"),
        "8.8.8.0/24": ("US", "Mountain View"),
        "1.0.0.0/8": ("AU", "Sydney"),
    }
    if ip_version == 6:
        networks["2a02:8000::/20"] = ("DE", "Berlin")
    for cidr, (iso, city) in networks.items():
        record = {"country": {"iso_code": iso}, "city": {"names": {"en": city}}}
        writer.insert_network(IPSet([cidr]), record)
    path = tmp_path / "t.mmdb"
    writer.to_db_file(str(path))
    service = GeoService(path)
    probes = ["81.2.69.1", "81.2.70.9", "81.2.70.200", "8.8.8.8", "1.2.3.4", "9.9.9.9"]
    if ip_version == 6:
        probes += ["2a02:8001::1", "2a03::1"]
    for probe, row in zip(probes, _bulk_rows(service, probes), strict=True):
        assert _same(row, _reference(service, probe)), probe


def test_reserved_filter_matches_reserved_reason() -> None:
    fast = ReservedFilter()
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for network in _candidate_networks() or []:
        first, last = int(network.network_address), int(network.broadcast_address)
        make = type(network.network_address)
        width = 32 if network.version == 4 else 128
        for number in (first - 1, first, first + 1, last - 1, last, last + 1):
            if 0 <= number < 2**width:
                probes.append(make(number))
    rng = random.Random(3)
    probes += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(20000)]
    probes += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(2000)]
    for ip in probes:
        assert fast.is_reserved(ip) == (reserved_reason(ip) is not None), ip


def test_cidrs_give_one_row_per_database_network(testdata: Path) -> None:
    service = GeoService(testdata / "GeoIP2-City-Test.mmdb")
    text = "81.2.69.0/23\n2.125.160.0-2.125.160.255\n# comment\n89.160.20.112/28\n10.0.0.0/8\n"
    out = io.BytesIO()
    summary = run(service, [("list.txt", io.BytesIO(text.encode()))], Options("ndjson"), out)
    rows = _ndjson(out.getvalue())
    assert summary.input_formats == {"list.txt": "cidrs"}
    with maxminddb.open_database(str(testdata / "GeoIP2-City-Test.mmdb")) as reader:
        inside = []
        for network, _ in reader:
            if network.version == 6:
                continue
            for wanted in ("81.2.69.0/23", "2.125.160.0/24", "89.160.20.112/28"):
                query = ipaddress.ip_network(wanted, strict=False)
                if network.subnet_of(query) or query.subnet_of(network):  # type: ignore[arg-type]
                    inside.append((wanted, str(network)))
    by_line = {1: "81.2.69.0/23", 2: "2.125.160.0/24", 4: "89.160.20.112/28"}
    got = [(by_line[row["line"]], row["network"]) for row in rows if row["line"] in by_line]
    assert sorted(got) == sorted(inside)
    for row in rows:
        if row["error"] is None:
            assert _same(row, _reference(service, row["ip"]))
    private = [row for row in rows if row["line"] == 5]
    assert [(row["error"], row["input"]) for row in private] == [("reserved_address", "10.0.0.0/8")]
    # unique mode: one row per address of the ranges, counted as the per-line run counts them
    out = io.BytesIO()
    unique_options = Options("ndjson", unique=True)
    unique = run(service, [("list.txt", io.BytesIO(text.encode()))], unique_options, out)
    unique_rows = _ndjson(out.getvalue())
    assert [row["ip"] for row in unique_rows] == list(dict.fromkeys(row["ip"] for row in rows))
    counted = ("valid", "located", "reserved", "not_found", "distinct_ips", "top")
    assert {name: getattr(unique, name) for name in counted} == {
        name: getattr(summary, name) for name in counted
    }


def test_expand_and_its_limit(service: GeoService) -> None:
    out = io.BytesIO()
    source = ("r.txt", io.BytesIO(b"8.8.8.0/30\n1.1.1.1-1.1.1.2\n"))
    run(service, [source], Options("ndjson", expand=True, max_expand=4), out)
    rows = _ndjson(out.getvalue())
    assert [row["ip"] for row in rows] == [
        "8.8.8.0", "8.8.8.1", "8.8.8.2", "8.8.8.3", "1.1.1.1", "1.1.1.2",
    ]  # fmt: skip
    assert all(_same(row, _reference(service, row["ip"])) for row in rows)
    with pytest.raises(BulkError, match=r"line 1: 8.8.8.0/24 has 256 addresses, more than"):
        run(
            service,
            [("r.txt", io.BytesIO(b"8.8.8.0/24\n"))],
            Options(expand=True, max_expand=255),
            io.BytesIO(),
        )


def test_mixed_formats_gzip_and_bad_lines(service: GeoService, tmp_path: Path) -> None:
    ips = tmp_path / "ips.txt"
    ips.write_text("8.8.8.8\n1.1.1.1 # cloudflare\n\nnot-an-ip\n")
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text(
        '{"client": {"addr": "81.2.69.142"}, "n": 1}\n{"client": {}}\nnot json\n'
        '{"client": {"addr": "2001:4860:4860::8888"}}\n'
    )
    table = tmp_path / "visits.csv"
    table.write_text('when,Client IP,path\n2024-01-01,"9.9.9.9",/\n2024-01-02,,/x\n')
    log = tmp_path / "access.log.gz"
    lines, _ = combined_log(random.Random(1), 50, 10)
    log.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = io.BytesIO()
    options = Options("ndjson", ip_field="client.addr", ip_column="Client IP")
    summary = run(service, [ips, jsonl, table, log], options, out)
    assert summary.input_formats == {
        str(ips): "ips",
        str(jsonl): "jsonl",
        str(table): "csv",
        str(log): "log",
    }
    rows = _ndjson(out.getvalue())
    assert [(row["source"], row["line"]) for row in rows][:6] == [
        (str(ips), 1),
        (str(ips), 2),
        (str(jsonl), 1),
        (str(jsonl), 4),
        (str(table), 2),
        (str(log), 1),
    ]
    assert summary.valid == 2 + 2 + 1 + 50 == len(rows)
    assert [(bad.source, bad.line, bad.reason) for bad in summary.unparseable_lines] == [
        (str(ips), 4, "not an IP address, CIDR or range"),
        (str(jsonl), 2, "no field client.addr"),
        (str(jsonl), 3, "not valid JSON"),
        (str(table), 3, "column Client IP is empty"),
    ]
    out = io.BytesIO()
    summary = run(service, [table], Options("ndjson", ip_column="Client IP"), out)
    assert summary.input_formats == {str(table): "csv"}
    assert [row["ip"] for row in _ndjson(out.getvalue())] == ["9.9.9.9"]
    assert summary.unparseable == 1 and summary.skipped == 1  # the header line


def test_unparseable_lines_first_twenty_reported(service: GeoService) -> None:
    text = "8.8.8.8\n" + "".join(f"bad{n}\n" for n in range(30)) + "1.1.1.1\n"
    summary = run(service, [("x", io.BytesIO(text.encode()))], Options(), io.BytesIO())
    assert summary.unparseable == 30
    assert [bad.line for bad in summary.unparseable_lines] == list(range(2, 22))
    assert summary.unparseable_lines[0].text == "bad0"


def test_empty_and_garbage_inputs(service: GeoService) -> None:
    out = io.BytesIO()
    summary = run(service, [("empty", io.BytesIO(b""))], Options("json"), out)
    assert out.getvalue() == b"[]\n"
    assert summary.lines == 0 and summary.warnings == ["empty: empty input"]
    garbage = bytes(random.Random(2).getrandbits(8) for _ in range(200_000))
    summary = run(service, [("bin", io.BytesIO(garbage))], Options(max_line=4096), io.BytesIO())
    assert summary.valid == 0 and summary.unparseable == summary.lines - summary.skipped
    assert any("format not recognised" in warning for warning in summary.warnings)
    long_line = b"8.8.8.8\n" + b"x" * 300_000 + b"\n1.1.1.1\n"
    out = io.BytesIO()
    summary = run(service, [("long", io.BytesIO(long_line))], Options("ndjson"), out)
    assert [row["line"] for row in _ndjson(out.getvalue())] == [1, 3]
    assert summary.unparseable_lines[0].reason == "line longer than 65536 bytes"


def test_output_formats_and_fields(service: GeoService) -> None:
    data = b"8.8.8.8\n10.0.0.1\n"
    outputs = {}
    for fmt in ("csv", "ndjson", "json"):
        out = io.BytesIO()
        run(
            service,
            [("a", io.BytesIO(data))],
            Options(fmt, fields=("ip", "line", "city", "error")),
            out,
        )
        outputs[fmt] = out.getvalue()
    as_json = orjson.loads(outputs["json"])
    assert as_json == _ndjson(outputs["ndjson"])
    assert list(as_json[0]) == ["line", "ip", "city", "error"]  # bulk columns lead
    assert as_json[1] == {"line": 2, "ip": "10.0.0.1", "city": None, "error": "reserved_address"}
    table = list(csv.reader(io.StringIO(outputs["csv"].decode())))
    assert table == [["line", "ip", "city", "error"], ["1", "8.8.8.8", "", ""],
                     ["2", "10.0.0.1", "", "reserved_address"]]  # fmt: skip
    with pytest.raises(BulkError, match="unknown field"):
        run(service, [("a", io.BytesIO(data))], Options(fields=("nope",)), io.BytesIO())
    with pytest.raises(BulkError, match="unknown field"):
        run(
            service, [("a", io.BytesIO(data))], Options(fields=("line",), unique=True), io.BytesIO()
        )


def test_progress_and_cancel(service: GeoService, tmp_path: Path) -> None:
    lines, _ = combined_log(random.Random(4), 30000, 300)
    path = tmp_path / "big.log"
    path.write_text("\n".join(lines) + "\n")
    seen: list[Progress] = []
    summary = run(service, [path], Options(), io.BytesIO(), progress=seen.append)
    assert seen and seen[-1].bytes_total == path.stat().st_size
    assert seen[-1].lines == summary.lines == 30000
    assert [state.bytes_done for state in seen] == sorted(state.bytes_done for state in seen)
    target = tmp_path / "out.csv"
    with pytest.raises(Cancelled):
        run(service, [path], Options(), target, should_cancel=lambda: True)
    assert not target.exists() and not (tmp_path / "out.csv.partial").exists()
    run(service, [path], Options(), target)
    assert target.read_text().count("\n") == 30001


def test_batch_api_answers_like_single_lookups(app: Any) -> None:
    queries = ["8.8.8.8", " 81.2.69.142 ", "::ffff:1.1.1.1", "10.0.0.1", "not an ip", "8.8.8.8"]
    response = app.test_client().post("/api/v1/batch", data=orjson.dumps(queries))
    assert response.status_code == 200
    answers = response.get_json()
    service = app.extensions["ipgeo.geo"]
    for query, answer in zip(queries, answers, strict=True):
        try:
            expected = service.lookup(query).as_dict()
        except GeoError as exc:
            assert answer == {"query": query, "error": {"code": exc.code, "message": exc.message}}
            continue
        assert _same(answer, expected), query
    selected = app.test_client().post(
        "/api/v1/batch?fields=ip,country_iso,addresses", data=orjson.dumps(["8.8.8.8"])
    )
    assert selected.get_json() == [{"ip": "8.8.8.8", "country_iso": "US", "addresses": None}]


def test_csv_matches_ndjson_and_asn_database(testdata: Path) -> None:
    from ipgeo.formats import cell

    service = GeoService(testdata / "GeoIP2-City-Test.mmdb", testdata / "GeoLite2-ASN-Test.mmdb")
    with maxminddb.open_database(str(testdata / "GeoIP2-City-Test.mmdb")) as reader:
        ips = [str(network.network_address) for network, _ in reader][:400]
    ips += ["1.128.0.1", "216.160.83.56", "89.160.20.128", "81.2.69.142", "10.9.9.9"]
    data = ("\n".join(ips) + "\n").encode()
    csv_out, json_out = io.BytesIO(), io.BytesIO()
    run(service, [("t", io.BytesIO(data))], Options("csv"), csv_out)
    run(service, [("t", io.BytesIO(data))], Options("ndjson"), json_out)
    table = list(csv.DictReader(io.StringIO(csv_out.getvalue().decode())))
    objects = _ndjson(json_out.getvalue())
    assert len(table) == len(objects) > 100
    assert any(row["asn_org"] for row in objects)
    for row, obj in zip(table, objects, strict=True):
        # the two runs may straddle a second: local times are compared by ``_same`` rules
        assert _same(row, {key: cell(value) for key, value in obj.items()})
        if obj["error"] is None:
            assert _same(obj, _reference(service, obj["ip"])), obj["ip"]


def test_default_csv_rows_equal_core_lookup(
    service: GeoService, log_file: tuple[Path, list[str | None]]
) -> None:
    """Default per-line CSV rows are assembled from per-record fragments: check every cell."""
    from ipgeo.formats import cell

    path, clients = log_file
    out = io.BytesIO()
    summary = run(service, [path], Options(), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    expected_lines = [number for number, ip in enumerate(clients, 1) if ip is not None]
    assert [int(row["line"]) for row in rows] == expected_lines
    for row in rows:
        ip = clients[int(row["line"]) - 1]
        assert ip is not None and row["input"] == ip and row["source"] == str(path)
        expected = {key: cell(value) for key, value in _reference(service, ip).items()}
        assert _same(row, expected), (ip, row, expected)
    # one clock for the whole run: a zone has the same offset and local time in every row
    times = {(row["time_zone"], row["local_time"]) for row in rows if row["time_zone"]}
    assert len(times) == len({zone for zone, _ in times})
    assert summary.distinct_ips == len({row["ip"] for row in rows})


def test_known_ips_do_not_hide_odd_log_lines(
    service: GeoService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines whose first field is not the client IP still go through the full extractor."""
    monkeypatch.setattr("ipgeo.bulk.sources.CHUNK_SIZE", 100)  # many batches: IPs get known
    text = (
        '8.8.8.8 - - [10/Oct/2024:00:00:00 +0000] "GET / HTTP/1.1" 200 1\n'
        ' 8.8.8.8 - - [10/Oct/2024:00:00:01 +0000] "GET / HTTP/1.1" 200 1\n'
        "# 8.8.8.8 a comment\n"
        "\n"
        '8.8.8.8 - - [10/Oct/2024:00:00:02 +0000] "GET / HTTP/1.1" 200 1\n'
        "1.1.1.1\r\n"
    )
    for fmt in ("csv", "ndjson"):
        out = io.BytesIO()
        summary = run(
            service,
            [("log", io.BytesIO(text.encode() * 3))],
            Options(fmt, input_format="log", fields=("line", "ip")),
            out,
        )
        data = out.getvalue().decode()
        lines = data.splitlines()[1:] if fmt == "csv" else data.splitlines()
        numbers = [1, 5, 6, 7, 11, 12, 13, 17, 18]
        assert len(lines) == len(numbers), data
        if fmt == "csv":
            assert [line.split(",")[0] for line in lines] == [str(n) for n in numbers]
        else:
            assert [orjson.loads(line) for line in lines][-2:] == [
                {"line": 17, "ip": "8.8.8.8"},
                {"line": 18, "ip": "1.1.1.1"},
            ]
        assert [bad.line for bad in summary.unparseable_lines] == [2, 8, 14]
        assert summary.skipped == 6 and summary.valid == 9
        assert summary.distinct_ips == 2


def test_distinct_count_is_exact() -> None:
    from ipgeo.bulk import distinct

    counter = distinct.DistinctIPs()
    rng = random.Random(7)
    ips = [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(3000)]
    ips += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(1000)]
    for ip in ips * 2:
        counter.add(ip)
    assert len(counter) == len(set(ips))
    counter.add(ips[0])
    assert len(counter) == len(set(ips))


@pytest.mark.parametrize("odd", ["", "01.2.3.4"])
def test_vectorised_ipv4_rows_equal_core_lookup(service: GeoService, odd: str) -> None:
    """Fresh IPv4 addresses of a batch are looked up together (parse, reserved check, tree walk,
    row tails as arrays); with a non-canonical token in the batch, one by one: same rows."""
    from ipgeo.formats import cell

    rng = random.Random(11)
    ips = public_ips(rng, 3000)
    ips += ["10.1.2.3", "127.0.0.1", "100.64.1.1", "192.0.2.7", "0.1.2.3", "255.255.255.255"]
    ips += ["192.88.99.1", "224.0.0.1", "2001:db8::1", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"]
    ips += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(3000)]
    rng.shuffle(ips)
    lines = [*ips, odd, *ips[:50]]
    out = io.BytesIO()
    summary = run(service, [("ips", io.BytesIO("\n".join(lines).encode()))], Options(), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    expected_inputs = [line for line in lines if line and line != odd]
    assert [row["input"] for row in rows] == expected_inputs
    for row in rows:
        expected = {key: cell(value) for key, value in _reference(service, row["input"]).items()}
        assert _same(row, expected), (row, expected)
    assert summary.unparseable == (1 if odd else 0)
    assert summary.distinct_ips == len(set(ips))
    assert summary.reserved == sum(row["error"] == "reserved_address" for row in rows)
    assert summary.not_found == sum(row["error"] == "not_found" for row in rows)


def test_odd_items_in_a_batch_of_new_ips(service: GeoService) -> None:
    """Items with a newline inside, non-ASCII ones and ranges take the item-by-item path."""
    values = ["8.8.8.8", "1.2.3.4\n5.6.7.8", "81.2.69.142", "ünï", "9.9.9.9", "1.1.1.1"]
    data = b"".join(orjson.dumps({"ip": value}) + b"\n" for value in values)
    out = io.BytesIO()
    summary = run(service, [("j", io.BytesIO(data))], Options(input_format="jsonl"), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert [row["input"] for row in rows] == ["8.8.8.8", "81.2.69.142", "9.9.9.9", "1.1.1.1"]
    assert [bad.line for bad in summary.unparseable_lines] == [2, 4]
    listing = b"8.8.8.8\n81.2.69.0/30\n9.9.9.9\n"
    out = io.BytesIO()
    summary = run(service, [("l", io.BytesIO(listing))], Options(input_format="ips"), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue().decode())))
    assert [row["input"] for row in rows] == ["8.8.8.8", "81.2.69.0/30", "9.9.9.9"]
    assert summary.unparseable == 0


@pytest.mark.parametrize("unique", [False, True])
def test_a_finished_run_is_freed_at_once(tmp_path: Path, unique: bool) -> None:
    """No reference cycle keeps a run (its answers, keys, rows) alive after it returns: with
    the collector frozen for the run, one would wait for the next full collection (for the
    CLI: its exit, 0.1-0.2 s on a 1M-line log)."""
    path = tmp_path / "ips.txt"
    path.write_text("81.2.69.142\n8.8.8.8\n2001:db8::1\nnot-an-ip\n81.2.69.142\n")
    service = GeoService()
    run(service, [path], Options(unique=unique), io.BytesIO())
    left = [type(o).__name__ for o in gc.get_objects() if type(o) in (BulkRun, Keyer, NewKeys)]
    assert left == []
