"""Benchmark ``ipgeo bulk`` against a naive ``geoip2`` loop, measured in the same run.

Generates
  (a) a combined access log of --lines lines over --distinct IPs, Zipf-like (s = 1),
  (b) --random distinct random public IPv4 addresses, one per line,
  (c) optionally a log of about --big-gb GB (copies of (a)) for the peak-memory check,
and runs (a) again with ``--fields``, ``--lang de`` and ``--unique`` (each should be within
15 % of the default columns' time); case (d), ``--cases d``, runs the mixed log of
``bench.accesslog`` (--mixed-lines lines) with ``--jobs 1`` and ``--jobs N`` (per-line and
unique) and reports the speed-up in wall time; each case runs as a separate process, reporting
wall-clock lines/s and peak RSS (``wait4`` rusage of that process). The naive loop opens a
``geoip2`` Reader once and calls ``reader.city(ip)`` per line, writing CSV, exactly what
people write first.

    .venv/bin/python -m bench.bulk                 # full run (several minutes)
    .venv/bin/python -m bench.bulk --lines 100000 --random 100000 --big-gb 0   # quick
    .venv/bin/python -m bench.bulk --cases d --jobs 2   # chunked runs: --jobs 2 against 1
    git worktree add /tmp/old 5cb7b98   # the code before issue 15, in the same rounds:
    .venv/bin/python -m bench.bulk --cases ab --against /tmp/old/src
"""

from __future__ import annotations

import argparse
import compileall
import ipaddress
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ipgeo.geo as geo_package
from bench.accesslog import write_log_file
from ipgeo.geo.queries import reserved_reason

ROOT = Path(__file__).resolve().parent.parent

NAIVE = r"""
import csv, sys
import geoip2.database, geoip2.errors
from ipgeo.geo.database import bundled_city_db
reader = geoip2.database.Reader(str(bundled_city_db()))
out = csv.writer(open(sys.argv[2], "w", newline=""))
out.writerow(["ip", "country_iso", "country", "region", "city", "postal_code", "latitude",
              "longitude", "accuracy_radius_km", "time_zone", "error"])
with open(sys.argv[1]) as lines:
    for line in lines:
        ip = line.split(" ", 1)[0].strip()
        if not ip:
            continue
        try:
            r = reader.city(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError) as exc:
            out.writerow([ip, "", "", "", "", "", "", "", "", "", type(exc).__name__])
            continue
        out.writerow([ip, r.country.iso_code, r.country.name, r.subdivisions.most_specific.name,
                      r.city.name, r.postal.code, r.location.latitude, r.location.longitude,
                      r.location.accuracy_radius, r.location.time_zone, ""])
"""

# options that must cost no more than 15 % over the default columns (case (a))
VARIANTS = (
    ("--fields ip,country_iso,region,city,asn", ["--fields", "ip,country_iso,region,city,asn"]),
    ("--lang de", ["--lang", "de"]),
    ("--unique", ["--unique"]),
    ("--format ndjson", ["--format", "ndjson"]),
)

AGENTS = ("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "curl/8.5.0")
PATHS = ("/", "/index.html", "/api/v1/lookup/8.8.8.8", "/static/site.css", "/feed.xml")


def public_ipv4(rng: random.Random, count: int) -> list[str]:
    """``count`` distinct random public IPv4 addresses (not private, multicast or reserved)."""
    seen: set[int] = set()
    found: list[str] = []
    while len(found) < count:
        number = rng.getrandbits(32)
        if number in seen:
            continue
        ip = ipaddress.IPv4Address(number)
        if reserved_reason(ip) is None:
            seen.add(number)
            found.append(str(ip))
    return found


def make_log(path: Path, lines: int, distinct: int, rng: random.Random) -> None:
    """A combined log: ``distinct`` IPs (10% IPv6), Zipf-like frequencies."""
    pool = public_ipv4(rng, distinct - distinct // 10)
    # IPv6 from 2000::/3, where the allocated space is (parts of it are not in the database)
    pool += [
        str(ipaddress.IPv6Address((0x2001 + rng.randrange(0x0C00)) << 112 | rng.getrandbits(112)))
        for _ in range(distinct // 10)
    ]
    rng.shuffle(pool)
    weights = [1.0 / (rank + 1) for rank in range(len(pool))]
    clients = rng.choices(pool, weights, k=lines)
    start = datetime(2024, 10, 10, tzinfo=UTC)
    with path.open("w") as out:
        for number, ip in enumerate(clients):
            when = (start + timedelta(seconds=number // 10)).strftime("%d/%b/%Y:%H:%M:%S +0000")
            out.write(
                f'{ip} - - [{when}] "GET {PATHS[number % 5]} HTTP/1.1" 200 {number % 9000 + 100} '
                f'"https://example.org/" "{AGENTS[number % 2]}"\n'
            )


def measure(command: list[str], quiet: bool = False) -> tuple[float, float, int]:
    """Run ``command``; return its CPU seconds (user + system), wall seconds, peak RSS in MB.

    CPU time is the fair measure on a shared machine: wall time also counts the time the
    process waited for a core other programs were using. The output file (after ``-o``, or
    the last argument of the naive loop) is removed first: dropping an earlier run's output
    (up to 240 MB of page cache freed in the process's system time) is not this run's work,
    """
    output = command[command.index("-o") + 1] if "-o" in command else command[-1]
    Path(output).unlink(missing_ok=True)
    # and an earlier run's output still being written back to disk would take a core from
    # this one (the kernel's flusher threads): a run with a core per process would pay for it
    os.sync()
    started = time.perf_counter()
    stderr = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"{command} failed with status {status}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss // 1024


def _round(commands: list[list[str]], number: int) -> list[tuple[float, float, int]]:
    """``measure`` each command, starting with the ``number``-th (a run right after the
    half-minute naive loop was seen to take longer: each command takes each place in turn)."""
    start = number % len(commands)
    order = list(range(start, len(commands))) + list(range(start))
    runs = {index: measure(commands[index]) for index in order}
    return [runs[index] for index in range(len(commands))]


def median_run(runs: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    """The run of the median CPU time."""
    return sorted(runs, key=lambda run: run[0])[len(runs) // 2]


def jobs_case(work: Path, ipgeo: list[str], lines: int, jobs: int, rounds: int) -> None:
    """Case (d): ``--jobs 1`` against ``--jobs N`` on the mixed log, the best wall time of
    ``rounds`` rounds each (interleaved)."""
    mixed = write_log_file(work / "mixed.log", lines)
    print(f"\n| (d) {lines:,} lines | --jobs 1 wall s | --jobs {jobs} wall s | speed-up "
          f"| CPU s 1 / {jobs} |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for mode in ("--per-line", "--unique"):
        timings: dict[int, list[tuple[float, float, int]]] = {1: [], jobs: []}
        for _ in range(rounds):
            for count in (1, jobs):
                command = [*ipgeo, str(mixed), mode, "--jobs", str(count)]
                timings[count].append(measure([*command, "-o", str(work / "jobs.csv")], True))
        one = min(timings[1], key=lambda timing: timing[1])
        many = min(timings[jobs], key=lambda timing: timing[1])
        print(f"| {mode} | {one[1]:.2f} | {many[1]:.2f} | {one[1] / many[1]:.2f}x "
              f"| {one[0]:.1f} / {many[0]:.1f} |")  # fmt: skip
    mixed.unlink()
    (work / "jobs.csv").unlink(missing_ok=True)


def main() -> None:
    """Generate the inputs, run every case, print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--distinct", type=int, default=50_000)
    parser.add_argument("--random", type=int, default=1_000_000)
    parser.add_argument("--big-gb", type=float, default=1.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds: median CPU time and ratio; (d) best wall time",
    )
    parser.add_argument("--cases", default="abc", help="which cases to run (default: abc)")
    parser.add_argument("--jobs", type=int, default=2, help="case (d): processes")
    parser.add_argument("--mixed-lines", type=int, default=2_000_000, help="case (d): lines")
    parser.add_argument(
        "--against",
        type=Path,
        default=None,
        help="(a), (b): also run the ipgeo of another checkout's src/ (a git worktree of an "
        "older commit) in the same rounds",
    )
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="ipgeo-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(20241010)
    python = sys.executable
    # Time Python's start-up, not the compiling of ipgeo's own modules: installed packages are
    # compiled when installed, an editable install's sources are not, and where
    # PYTHONDONTWRITEBYTECODE is set (as here) every run would compile them again.
    compileall.compile_dir(Path(geo_package.__file__).parent.parent, quiet=1)
    ipgeo = [python, "-m", "ipgeo", "bulk"]
    against = None
    if args.against is not None:
        compileall.compile_dir(args.against, quiet=1)
        against = ["env", f"PYTHONPATH={args.against.resolve()}", *ipgeo]
    log, ips, big = work / "access.log", work / "random-ips.txt", work / "big.log"
    print(f"generating inputs in {work} ...", file=sys.stderr)
    if "d" in args.cases:
        jobs_case(work, ipgeo, args.mixed_lines, args.jobs, args.rounds)
        if args.cases == "d":
            return
    make_log(log, args.lines, args.distinct, rng)
    if "b" in args.cases:
        ips.write_text("\n".join(public_ipv4(rng, args.random)) + "\n")
    results = []
    cases = [("(a) log", log, args.lines), ("(b) random IPs", ips, args.random)]
    cases = [case for case in cases if case[0][1] in args.cases]
    variants: list[tuple[str, float]] = []
    compared: list[tuple[str, float, float, float, float]] = []
    for name, path, lines in cases:
        # Rounds interleave the naive loop, ipgeo and its variants: this machine's speed drifts
        # over minutes, and each ratio is of runs made within a minute or two of each other.
        naive_command = [python, "-c", NAIVE, str(path), str(work / "naive.csv")]
        ours_command = [*ipgeo, str(path), "-o", str(work / "ours.csv")]
        commands = [naive_command, ours_command]
        if against is not None:
            commands.append([*against, str(path), "-o", str(work / "against.csv")])
        if path == log:
            commands += [[*ours_command, *options] for _, options in VARIANTS]
        rounds = [_round(commands, number) for number in range(args.rounds)]
        naive, ours = (median_run([run[column] for run in rounds]) for column in (0, 1))
        speedup = statistics.median(run[0][0] / run[1][0] for run in rounds)
        results.append((name, lines, naive, ours, speedup))
        print(f"{name}: naive {naive}, ipgeo {ours} (cpu s, wall s, MB)", file=sys.stderr)
        if against is not None:
            other = median_run([run[2] for run in rounds])
            ratio = statistics.median(run[0][0] / run[2][0] for run in rounds)
            compared.append((name, speedup, ratio, ours[0], other[0]))
        first_variant = 3 if against is not None else 2
        for column, (label, _) in enumerate(VARIANTS if path == log else (), first_variant):
            ratio = statistics.median(run[column][0] / run[1][0] for run in rounds)
            variants.append((label, ratio))
            print(f"(a) {label}: {ratio:.2f} of the default's CPU time", file=sys.stderr)
    big_row = None
    if args.big_gb > 0 and "c" in args.cases:
        with big.open("wb") as out:
            while out.tell() < args.big_gb * 1e9:
                with log.open("rb") as part:
                    shutil.copyfileobj(part, out, 1 << 22)
        size = big.stat().st_size
        big_lines = args.lines * round(size / log.stat().st_size)
        big_row = (size, big_lines, *measure([*ipgeo, str(big), "-o", str(work / "big.csv")]))
        (work / "big.csv").unlink()
    load = os.getloadavg()[0]
    print(f"\nPython {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load:.1f}")
    print(
        "\n| case | lines | naive geoip2 lines/CPU-s | ipgeo bulk lines/CPU-s "
        "| speed-up (CPU, median of rounds) | peak RSS naive / ipgeo |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, lines, (naive_cpu, _, naive_mb), (cpu, _, peak), speedup in results:
        print(
            f"| {name} | {lines:,} | {lines / naive_cpu:,.0f} | {lines / cpu:,.0f} | "
            f"{speedup:.1f}x | {naive_mb} MB / {peak} MB |"
        )
    if big_row:
        size, lines, cpu, _, peak = big_row
        print(
            f"| (c) {size / 1e9:.2f} GB log | {lines:,} | - | {lines / cpu:,.0f} | - | "
            f"- / {peak} MB |"
        )
    if compared:
        print(f"\n| case | speed-up | speed-up of {args.against} | CPU s / its |")
        print("|---|---:|---:|---:|")
        for name, speedup, ratio, cpu, other_cpu in compared:
            print(f"| {name} | {speedup:.1f}x | {ratio:.1f}x | {cpu:.2f} / {other_cpu:.2f} |")
    if variants:
        print("\n| (a) with | CPU time / default columns' |\n|---|---:|")
        for label, ratio in variants:
            print(f"| {label} | {ratio:.2f} |")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
