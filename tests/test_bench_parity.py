"""The parity harness's own parts (bench/parity): clock normalisation, storage, reports.

The recording itself is never run here (it takes minutes); see docs/benchmarks.md.
"""

from __future__ import annotations

import random
from pathlib import Path

from bench.parity.inputs import EDGE_CASES, SCOPED, bulk_lines, random_addresses
from bench.parity.store import CaseWriter, describe, kind_of, normalise, read_case

STAMP = "2026-12-06T05:20:49+05:30"


def test_json_xml_and_text_clock_values_are_replaced_and_nothing_else() -> None:
    body = f'{{"utc_offset":"+05:30","local_time":"{STAMP}","x":"+05:30"}}'.encode()
    assert normalise("json", body) == (
        b'{"utc_offset":"+hh:mm","local_time":"yyyy-mm-ddThh:mm:ss+hh:mm","x":"+05:30"}'
    )
    odd = b'{"utc_offset":"+0530","local_time":"2026-12-06T05:20:49Z","utc_offset":null}'
    assert normalise("json", odd) == odd  # another shape stays, so it shows up as a difference
    xml = f"<lookup><utc_offset>-06:00</utc_offset><local_time>{STAMP}</local_time><x/>".encode()
    assert normalise("xml", xml) == (
        b"<lookup><utc_offset>+hh:mm</utc_offset>"
        b"<local_time>yyyy-mm-ddThh:mm:ss+hh:mm</local_time><x/>"
    )
    text = f"ip          1.2.3.4\nutc_offset  +01:00\nlocal_time  {STAMP}\nasn         \n".encode()
    assert normalise("text", text).splitlines()[1:3] == [
        b"utc_offset  +hh:mm",
        b"local_time  yyyy-mm-ddThh:mm:ss+hh:mm",
    ]


def test_csv_clock_columns_are_found_by_the_header() -> None:
    body = (
        f'ip,city,local_time,utc_offset\n1.2.3.4,"Washington, D.C.",{STAMP},-05:00\n'
        f'5.6.7.8,,,\n9.9.9.9,"a ""b""",{STAMP},+01:00\n'
    ).encode()
    assert normalise("csv", body).decode().splitlines() == [
        "ip,city,local_time,utc_offset",
        '1.2.3.4,"Washington, D.C.",yyyy-mm-ddThh:mm:ss+hh:mm,+hh:mm',
        "5.6.7.8,,,",
        '9.9.9.9,"a ""b""",yyyy-mm-ddThh:mm:ss+hh:mm,+hh:mm',
    ]
    other = f"ip,note\n1.2.3.4,{STAMP}\n".encode()
    assert normalise("csv", other) == other  # not a clock column


def test_summary_seconds_and_kinds() -> None:
    assert normalise("summary", b'{\n  "rows": 6,\n  "seconds": 0.07,\n') == (
        b'{\n  "rows": 6,\n  "seconds": 0,\n'
    )
    assert kind_of("application/xml; charset=utf-8") == "xml"
    assert kind_of("text/plain; charset=utf-8") == "text"
    assert kind_of("text/html; charset=utf-8") == "raw"


def test_cases_round_trip_and_differences_are_described(tmp_path: Path) -> None:
    items = [("GET /a\tb", b"200 x\n\n"), ("stdout", b""), ("k", bytes(range(256)))]
    with CaseWriter(tmp_path / "c.gz") as writer:
        for key, payload in items:
            writer.write(key, payload)
    assert list(read_case(tmp_path / "c.gz")) == items
    text = describe("k", b"a\nsame line one\nz", b"a\nsame line two\nz")
    assert "line 2, byte 11" in text and "one" in text and "two" in text


def test_inputs_are_seeded() -> None:
    first = random_addresses(random.Random(1), 50, 50)
    assert first == random_addresses(random.Random(1), 50, 50)
    lines = bulk_lines(random.Random(2), [*EDGE_CASES, *first], 500)
    assert len(lines) == len(EDGE_CASES) + 100 + 500 + 11
    assert SCOPED and all("%" in ip for ip in SCOPED)
