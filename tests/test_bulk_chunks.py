"""Chunked bulk runs (``ipgeo bulk --jobs N`` / ``--chunk-size``) give the bytes of one run.

Every run is a real ``ipgeo bulk`` process. Rows carry ``local_time`` at the second the run
started, so two runs are compared with that one value masked; everything else, and the JSON
summary but its ``seconds``, must be identical.
"""

from __future__ import annotations

import filecmp
import gzip
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.accesslog import write_log_file
from ipgeo.bulk import (
    PER_LINE_DEFAULT,
    UNIQUE_DEFAULT,
    Cancelled,
    Options,
    Progress,
    TooLarge,
    run,
)
from ipgeo.bulk.chunk_run import run_chunk
from ipgeo.bulk.chunks import NewlineCounter, split
from ipgeo.bulk.merge import merge
from ipgeo.bulk.parallel import default_chunk_size, run_parallel
from ipgeo.bulk.sources import Input
from ipgeo.geo import GeoService
from tests.loggen import combined_log

IPGEO = [sys.executable, "-m", "ipgeo", "bulk"]
_CLOCK = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Inputs of every kind: logs (plain with an over-long line, gzip), an IP/CIDR/range list,
    CSV with comments before its header, JSON lines, an empty gzip file."""
    folder = tmp_path_factory.mktemp("inputs")
    rng = random.Random(18)
    lines, _ = combined_log(rng, 3000, 300, bad_every=97)
    lines.insert(1234, "8.8.8.8 " + "x" * 70_000)  # longer than --max-line
    lines.insert(2000, "")
    log = folder / "access.log"
    log.write_text("\n".join(lines) + "\n")
    packed = folder / "more.log.gz"
    more, _ = combined_log(rng, 2500, 200, bad_every=50)
    packed.write_bytes(gzip.compress(("\r\n".join(more)).encode()))  # CRLF, no last newline
    items = ["# addresses", "", "1.2.3.0/29", "8.8.8.8", "2001:4860::/126", "not-an-ip"]
    items += ["81.2.69.140-81.2.69.143", "10.0.0.1", "::1", "8.8.8.8", "2a02:ec0::1"] * 40
    items += [line.split(" ")[0] for line in lines[:400]]
    addresses = folder / "list.txt"
    addresses.write_text("\n".join(items) + "\n")
    table = folder / "visits.csv"
    rows = ["# exported", "", 'when,client_ip,"note, quoted"']
    rows += [f'{n},{line.split(" ")[0]},"a ""b"" {n}"' for n, line in enumerate(lines[:900])]
    table.write_text("\n".join(rows) + "\n")
    records = folder / "events.jsonl"
    records.write_bytes(
        b"".join(
            orjson.dumps({"n": n, "remote_addr": line.split(" ")[0]}) + b"\n"
            for n, line in enumerate(lines[:700])
        )
    )
    empty = folder / "empty.gz"
    empty.write_bytes(gzip.compress(b""))  # bytes read: the gzip file's, lines: none
    return [log, packed, addresses, table, records, empty]


def bulk(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "TMPDIR": str(cwd)}
    result = subprocess.run(
        [*IPGEO, *args],
        input=stdin,
        capture_output=True,
        timeout=300,
        env=env,
        cwd=cwd,
        check=False,
    )
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    return result


def run_once(
    tmp: Path, name: str, args: list[str], stdin: bytes | None = None
) -> tuple[bytes, dict[str, Any]]:
    """The output and JSON summary of one run; no chunk files are left behind."""
    out = tmp / name
    result = bulk(
        *args, "-o", str(out), "--summary", "--summary-format", "json", cwd=tmp, stdin=stdin
    )
    assert result.returncode == 0, result.stderr.decode()
    summary = orjson.loads(result.stdout)
    assert summary.pop("seconds") >= 0
    assert not [path.name for path in tmp.iterdir() if path.name.startswith("ipgeo-chunks-")]
    assert not list(tmp.glob("*.partial"))
    return out.read_bytes(), summary


def masked(data: bytes) -> bytes:
    clocks = set(_CLOCK.findall(data))
    return _CLOCK.sub(b"<clock>", data) if clocks else data


CASES = [
    ["--format", "csv"],
    ["--format", "ndjson", "--fields", "source,line,input,ip,country_iso,city,asn,error"],
    ["--format", "json", "--lang", "de"],
    ["--format", "csv", "--unique"],
    ["--format", "json", "--unique", "--fields", "ip,hits,country,network"],
    ["--format", "ndjson", "--unique", "--lang", "de"],
    ["--format", "json", "--expand", "--top", "3"],
]


@pytest.mark.parametrize("options", CASES, ids=[" ".join(case) for case in CASES])
def test_chunked_runs_give_the_bytes_of_one_run(
    inputs: list[Path], options: list[str], tmp_path: Path
) -> None:
    files = [str(path) for path in inputs]
    expected, summary = run_once(tmp_path, "single", [*files, *options])
    assert summary["lines"] > 7500 and summary["unparseable"] > 50
    assert summary["input_formats"] == {
        files[0]: "log", files[1]: "log", files[2]: "cidrs", files[3]: "csv",
        files[4]: "jsonl", files[5]: "empty",
    }  # fmt: skip
    assert any("longer than" in bad["reason"] for bad in summary["unparseable_lines"]) or (
        summary["unparseable"] > 20
    )
    chunkings = [["--jobs", "2", "--chunk-size", "4K"]]
    if options == CASES[0]:
        chunkings.append(["--jobs", "1", "--chunk-size", "4K"])  # the chunks in one process
    for chunking in chunkings:
        output, chunked = run_once(tmp_path, "chunked", [*files, *options, *chunking])
        assert chunked == summary, chunking
        assert masked(output) == masked(expected), chunking


def test_stdin_and_a_file_in_chunks(inputs: list[Path], tmp_path: Path) -> None:
    data = inputs[0].read_bytes()
    args = ["-", str(inputs[2]), "--format", "ndjson"]
    expected, summary = run_once(tmp_path, "single", args, stdin=data)
    output, chunked = run_once(
        tmp_path, "chunked", [*args, "--jobs", "2", "--chunk-size", "16K"], stdin=data
    )
    assert chunked == summary and summary["sources"] == ["-", str(inputs[2])]
    assert masked(output) == masked(expected)


def test_errors_and_bounds_are_those_of_one_run(inputs: list[Path], tmp_path: Path) -> None:
    files = [str(path) for path in inputs]
    for args in (
        [*files, "--max-rows", "5000"],
        [*files, "--unique", "--max-rows", "100"],
        [str(inputs[3]), "--input-format", "csv", "--ip-column", "nope"],
        [str(inputs[2]), "--expand", "--max-expand", "4"],
    ):
        single = bulk(*args, "-o", "out", cwd=tmp_path)
        chunked = bulk(*args, "-o", "out", "--jobs", "2", "--chunk-size", "4K", cwd=tmp_path)
        assert single.returncode == chunked.returncode == 1, args
        assert chunked.stderr == single.stderr, args
        assert sorted(path.name for path in tmp_path.iterdir()) == [], args


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The acceptance input: an access log of 2,000,000 lines (mixed IPv4/IPv6, repeats)."""
    return write_log_file(tmp_path_factory.mktemp("big") / "access.log", 2_000_000)


@pytest.mark.parametrize("unique", [False, True], ids=["per-line", "unique"])
def test_two_million_lines_over_two_processes(big_log: Path, unique: bool, tmp_path: Path) -> None:
    # every column but local_time (the second each run started at), so that bytes compare
    columns = UNIQUE_DEFAULT if unique else PER_LINE_DEFAULT
    fields = ",".join(name for name in columns if name != "local_time")
    args = [str(big_log), "--unique" if unique else "--per-line", "--fields", fields]
    args += ["--summary", "--summary-format", "json"]
    single = bulk(*args, "-o", "single.csv", cwd=tmp_path)
    # unique: chunks of 8M (as jobs are cut in the acceptance test); per-line: one per process
    chunking = ["--chunk-size", "8M"] if unique else []
    chunked = bulk(*args, "-o", "chunked.csv", "--jobs", "2", *chunking, cwd=tmp_path)
    assert single.returncode == chunked.returncode == 0, chunked.stderr.decode()
    summary, merged = orjson.loads(single.stdout), orjson.loads(chunked.stdout)
    assert summary.pop("seconds") >= 0 and merged.pop("seconds") >= 0
    assert merged == summary and summary["lines"] == 2_000_000
    assert filecmp.cmp(tmp_path / "single.csv", tmp_path / "chunked.csv", shallow=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chunked.csv", "single.csv"]


def _children(pid: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                yield int(entry.name)


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGINT, 130, b"interrupted"), (signal.SIGTERM, 143, b"terminated")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stopped_run_removes_the_chunks(
    big_log: Path, tmp_path: Path, signum: int, status: int, said: bytes
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    process = subprocess.Popen(
        [*IPGEO, str(big_log), "-o", "out.csv", "--jobs", "2"],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("ipgeo-chunks-*/chunk-*.out*")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    children = list(_children(process.pid))
    assert children
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == status, stderr.decode()
    assert said in stderr and b"Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []
    for child in children:
        assert not Path(f"/proc/{child}").exists()


def test_a_chunk_per_line(tmp_path: Path) -> None:
    """Chunks of one line each (the library takes any size; the command's floor is 4K): blank
    lines, comments and a CSV header in chunks of their own."""
    table = tmp_path / "in.csv"
    table.write_text(
        "# a comment\n\nip,note\n8.8.8.8,x\n\n,empty\n2a02:ec0::1,y\nnope,z\n8.8.8.8,w"
    )
    listed = tmp_path / "in.txt"
    listed.write_text("\n\n1.2.3.0/30\n#\n::1\n\n")
    service = GeoService()
    options = Options(fields=("source", "line", "input", "ip", "city", "error"))
    single = run(service, [table, listed], options, tmp_path / "single")
    chunked = run_parallel(service, [table, listed], options, tmp_path / "chunked", 2, 1)
    single.seconds = chunked.seconds = 0.0
    assert chunked == single and single.lines == 15
    assert (tmp_path / "chunked").read_bytes() == (tmp_path / "single").read_bytes()
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "chunked", "in.csv", "in.txt", "single"
    ]  # fmt: skip


def test_the_chunk_size_of_the_command_has_a_floor(tmp_path: Path) -> None:
    """``--chunk-size`` below 4K is refused (a chunk per line would be a process task and a
    file per line), with the option named; 4K is taken."""
    log = tmp_path / "in.log"
    log.write_text("8.8.8.8 - - x\n" * 10)
    refused = bulk(str(log), "--jobs", "2", "--chunk-size", "1", cwd=tmp_path)
    assert refused.returncode == 2
    assert b"--chunk-size" in refused.stderr and b"4096" in refused.stderr
    taken = bulk(str(log), "-o", "out.csv", "--jobs", "2", "--chunk-size", "4K", cwd=tmp_path)
    assert taken.returncode == 0, taken.stderr.decode()


def test_the_library_bounds_progress_and_cancel(inputs: list[Path], tmp_path: Path) -> None:
    """The bounds of background jobs (``max_input``, ``max_rows``) end a chunked run as one run;
    progress is summed over chunks; a cancelled run leaves no chunk behind."""
    service = GeoService()  # the bundled GeoLite2 City database
    files: list[Input] = [inputs[0], inputs[2]]
    size = inputs[0].stat().st_size
    target = tmp_path / "out.csv"
    for options in (Options(max_input=size - 1), Options(max_input=size), Options(max_rows=10)):
        outcomes = []
        for chunked in (False, True):
            try:
                if chunked:
                    run_parallel(service, files, options, target, 2, 8192)
                else:
                    run(service, files, options, target)
                outcomes.append(("done", target.read_bytes().count(b"\n")))
            except TooLarge as exc:
                outcomes.append((exc.bound, exc.limit))
            assert not [path for path in tmp_path.iterdir() if path != target]
        assert outcomes[0] == outcomes[1], options
    states: list[Progress] = []
    run_parallel(service, files, Options(), target, 1, 8192, states.append)
    lines = sum(len(path.read_bytes().splitlines()) for path in (inputs[0], inputs[2]))
    assert states[-1].lines == lines
    assert [state.bytes_done for state in states] == sorted(state.bytes_done for state in states)
    target.unlink()
    with pytest.raises(Cancelled):
        run_parallel(service, files, Options(), target, 2, 8192, None, lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_an_opened_upload_is_cut_in_place(inputs: list[Path], tmp_path: Path) -> None:
    """A ``(name, stream)`` input opened from a plain file (a job's upload) is cut into byte
    ranges of that file, under its display name; a gzip one is decompressed into chunk files."""
    work = tmp_path / "chunks"
    work.mkdir()
    with inputs[0].open("rb") as plain, inputs[1].open("rb") as packed:
        plan = split([("upload.log", plain), ("more.log.gz", packed)], Options(), 65536, work)
    in_place = [chunk for chunk in plan.chunks if chunk.form.name == "upload.log"]
    assert len(in_place) > 1
    assert {chunk.path for chunk in in_place} == {str(inputs[0].resolve())}
    assert sum(chunk.length for chunk in in_place) == inputs[0].stat().st_size
    copies = [chunk for chunk in plan.chunks if chunk.form.name == "more.log.gz"]
    assert copies and all(Path(chunk.path).parent == work for chunk in copies)
    assert sorted(path.name for path in work.iterdir()) == sorted(
        Path(chunk.path).name for chunk in copies
    )


@pytest.mark.parametrize("jobs", [2, 3, 8])
def test_one_chunk_per_process(jobs: int, tmp_path: Path) -> None:
    """``--jobs N`` without ``--chunk-size`` cuts a file into N chunks of about equal size."""
    log = tmp_path / "access.log"
    write_log_file(log, 80_000)  # 13 MB: chunks of at least CHUNK_SIZE for 8 jobs
    work = tmp_path / "chunks"
    work.mkdir()
    plan = split([log], Options(), default_chunk_size([log], jobs), work)
    lengths = [chunk.length for chunk in plan.chunks]
    assert len(lengths) == jobs
    assert sum(lengths) == log.stat().st_size
    assert max(lengths) - min(lengths) < 0.01 * sum(lengths)


@pytest.mark.parametrize("unique", [False, True])
def test_a_merge_stops_when_cancelled(unique: bool, tmp_path: Path) -> None:
    """A merge asks ``should_cancel`` while it renders unique rows and copies rows: asked to
    stop part way, it raises ``Cancelled`` and leaves neither the output nor its partial."""
    log = tmp_path / "access.log"
    write_log_file(log, 30_000)
    work = tmp_path / "chunks"
    work.mkdir()
    service = GeoService()
    options = Options(unique=unique)
    plan = split([log], options, 1 << 20, work)
    assert len(plan.chunks) > 2
    for chunk in plan.chunks:
        run_chunk(service, chunk, options, plan.now(), work)
    asked: list[int] = []

    def after_one_look() -> bool:
        asked.append(1)
        return len(asked) > 1

    target = tmp_path / "out.csv"
    with pytest.raises(Cancelled):
        merge(service, plan, options, work, target, should_cancel=after_one_look)
    assert len(asked) == 2
    assert not target.exists() and not list(tmp_path.glob("out.csv*"))


@pytest.mark.parametrize(
    ("data", "start", "end"),
    [
        (b"", 0, 0),
        (b"a\nb\n", 0, 4),
        (b"a\nb\n", 1, 3),
        (b"\n\n\n", 2, 3),
        (b"no newline", 0, 10),
        (b"a\n", 2, 2),
        (b"x\n" * 3000, 7, 5001),  # a bigger block after a smaller one: the buffer grows
    ],
)
def test_newlines_are_counted_as_bytes_count_counts(data: bytes, start: int, end: int) -> None:
    """The cutter's numpy counter gives ``bytes.count`` for any slice, reusing its buffer."""
    counter = NewlineCounter()
    counter(b"\n" * 10, 0, 10)
    assert counter(data, start, end) == data.count(b"\n", start, end)
