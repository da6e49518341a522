"""``ipgeo bulk`` as users run it: stdin, gzip, summaries, bad and huge inputs, clear errors."""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.loggen import combined_log

IPGEO = [sys.executable, "-m", "ipgeo", "bulk"]


def bulk(
    *args: str, stdin: bytes | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run(
        [*IPGEO, *args], input=stdin, capture_output=True, timeout=timeout, check=False
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def test_stdin_csv_to_stdout() -> None:
    result = bulk("-", "--fields", "line,ip,country_iso", stdin=b"8.8.8.8\n\n81.2.69.142\nfoo\n")
    assert result.returncode == 0
    rows = list(csv.reader(io.StringIO(result.stdout.decode())))
    assert rows == [
        ["line", "ip", "country_iso"],
        ["1", "8.8.8.8", "US"],
        ["3", "81.2.69.142", "GB"],
    ]
    assert b"-:4: not an IP address: 'foo'" in result.stderr
    assert b"\x1b[" not in result.stderr  # no progress bar or colours when not on a terminal


def test_gzip_log_summary_json(tmp_path: Path) -> None:
    lines, clients = combined_log(random.Random(9), 3000, 400, bad_every=500)
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    out = tmp_path / "out.ndjson"
    result = bulk(str(log), "-o", str(out), "--format", "ndjson", "--summary",
                  "--summary-format", "json", "--unique")  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary = orjson.loads(result.stdout)  # rows went to the file, so the summary to stdout
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    valid = [ip for ip in clients if ip is not None]
    assert summary["lines"] == 3000 and summary["valid"] == len(valid)
    assert summary["unparseable"] == 3000 - len(valid) == len(summary["unparseable_lines"])
    assert summary["distinct_ips"] == len(set(valid)) == len(rows)
    assert sum(row["hits"] for row in rows) == len(valid)
    assert summary["input_formats"] == {str(log): "log"}
    assert summary["bytes_read"] == log.stat().st_size


def test_summary_table(tmp_path: Path) -> None:
    result = bulk("-", "-o", str(tmp_path / "x.csv"), "--summary", "--top", "3",
                  stdin=b"8.8.8.8\n1.1.1.1\n8.8.4.4\n")  # fmt: skip
    text = result.stdout.decode()
    assert "valid IPs" in text and "Top countries" in text and "United States" in text
    assert "66.7%" in text


def test_empty_garbage_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = bulk(str(empty))
    assert result.returncode == 0
    assert result.stdout.startswith(b"source,line,input,ip,") and result.stdout.count(b"\n") == 1
    assert b"empty input" in result.stderr
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(random.Random(1).randbytes(300_000))
    result = bulk(str(garbage), "--format", "ndjson")
    assert result.returncode == 0 and result.stdout == b""
    assert b"format not recognised" in result.stderr and b"unparseable line(s)" in result.stderr
    result = bulk(str(tmp_path / "missing.log"))
    assert result.returncode == 1
    assert b"missing.log: cannot open (No such file or directory)" in result.stderr


def _rss_kib(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_sparse_2gb_file_of_nuls(tmp_path: Path) -> None:
    """A 2 GB newline-less file is read in bounded chunks and reported as one bad line."""
    path = tmp_path / "zeros.bin"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024**3)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*IPGEO, str(path), "--summary", "--summary-format", "json", "-o", os.devnull],
            stdout=stdout,
            stderr=stderr,
        )
        peak_kib = 0
        # Sample the live RSS: the child's ru_maxrss would include the forking test process.
        while process.poll() is None:
            peak_kib = max(peak_kib, _rss_kib(process.pid))
            time.sleep(0.05)
    messages = err.read_bytes()
    assert process.returncode == 0, messages
    assert b"Traceback" not in messages
    assert b"1 unparseable line(s)" in messages and b"line longer than 65536 bytes" in messages
    summary = orjson.loads(out.read_bytes())
    assert summary["lines"] == 1 and summary["unparseable"] == 1 and summary["valid"] == 0
    assert summary["bytes_read"] == 2 * 1024**3
    assert 0 < peak_kib < 300 * 1024  # memory stayed bounded


def test_errors_are_messages(tmp_path: Path) -> None:
    result = bulk("-", "--expand", "--max-expand", "100", stdin=b"8.8.8.0/24\n")
    assert result.returncode == 1
    assert b"line 1: 8.8.8.0/24 has 256 addresses, more than --max-expand 100" in result.stderr
    result = bulk("-", "--fields", "ip,bogus", stdin=b"8.8.8.8\n")
    assert result.returncode == 1 and b"unknown field(s) for --per-line: bogus" in result.stderr
    result = bulk("-", "--input-format", "csv", "--ip-column", "addr", stdin=b"a,b\n1,2\n")
    assert result.returncode == 1 and b"CSV header has no column 'addr'" in result.stderr
    out = tmp_path / "no" / "such" / "dir.csv"
    result = bulk("-", "-o", str(out), stdin=b"8.8.8.8\n")
    assert result.returncode == 1 and b"cannot write" in result.stderr


def test_cidrs_per_network_and_expand() -> None:
    result = bulk("-", "--format", "ndjson", stdin=b"81.2.69.0/24\n")
    rows = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(row["input"] == "81.2.69.0/24" for row in rows)
    assert len({row["network"] for row in rows}) == len(rows)  # one row per database network
    result = bulk("-", "--format", "ndjson", "--expand", stdin=b"81.2.69.0/24\n")
    assert len(result.stdout.splitlines()) == 256


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a pseudo-terminal")
def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    lines, _ = combined_log(random.Random(2), 20000, 500)
    log = tmp_path / "a.log"
    log.write_text("\n".join(lines) + "\n")
    command = " ".join([*IPGEO, str(log), "-o", str(tmp_path / "o.csv")])
    result = subprocess.run(
        ["script", "-qefc", command, "/dev/null"],
        capture_output=True,
        timeout=120,
        check=False,
        env=os.environ | {"COLUMNS": "160", "TERM": "xterm"},
    )
    assert result.returncode == 0, result.stdout
    assert b"lines/s" in result.stdout  # the rich progress bar was drawn on the terminal
    assert (tmp_path / "o.csv").read_text().count("\n") == 20001


def test_bulk_does_not_import_web_or_dns_libraries() -> None:
    code = (
        "import sys; import ipgeo.cli.bulk, ipgeo.geo; "
        "print(sorted(m for m in ('flask', 'dns.resolver', 'redis') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.strip() == b"[]"


def test_bulk_run_does_not_import_metrics_xml_or_idna(tmp_path: Path) -> None:
    ips = tmp_path / "ips.txt"
    ips.write_text("8.8.8.8\n81.2.69.142\n2a02:8000::1\n1.2.3.4\n")
    code = (
        "import sys; from ipgeo.cli import main; "
        f"main(['bulk', {str(ips)!r}, '-o', {str(tmp_path / 'o.csv')!r}], standalone_mode=False); "
        "print(sorted(m for m in ('prometheus_client', 'xml.sax', 'idna') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
    assert result.stdout.strip() == b"[]"
    assert (tmp_path / "o.csv").read_text().count("\n") == 5
