"""Benchmark a background bulk job cut into chunks, with 1 and 2 (or more) real workers.

Generates the access log of issue 18 (``bench.accesslog``: 2,000,000 lines, IPv4 and IPv6,
repeats, bad lines), starts a private redis-server and N ``ipgeo worker`` processes, queues
the job as the web app does (the upload is a link to the log) and reports the wall time from
queuing to the merged result, for each number of workers; ``ipgeo bulk`` on the same file is
the single-process reference. Run it on a quiet machine (it uses every core it is given).

    .venv/bin/python -m bench.jobs                       # 2M lines, 1 and 2 workers, 3 rounds
    .venv/bin/python -m bench.jobs --lines 200000 --rounds 1     # a quick check
    .venv/bin/python -m bench.jobs --workers 1,2,4 --chunk-size 16M --unique
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from bench.accesslog import write_log_file
from ipgeo.jobs import JobFiles, JobOptions, enqueue, job_view, new_job_id
from ipgeo.jobs.worker import start_worker_process, stop_worker, worker_registered
from ipgeo.settings import Settings
from ipgeo.settings_parsers import parse_size

NAME = "access.log"


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A private redis-server (no persistence); its process and URL."""
    port = free_port()
    process = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--dir", str(directory), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    client.close()
    return process, url


def run_job(client: redis.Redis, settings: Settings, log: Path, unique: bool) -> float:
    """Queue one job for ``log`` and wait for its outcome; the wall time in seconds."""
    job_id = new_job_id()
    files = JobFiles.of(settings.data_dir, job_id)
    files.directory.mkdir(parents=True)
    os.link(log, files.input)
    started = time.monotonic()
    enqueue(client, settings, job_id, JobOptions(unique=unique), NAME, log.stat().st_size, None)
    while True:
        job = Job.fetch(job_id, connection=client, serializer=JSONSerializer)
        view = job_view(client, settings, job)
        if view.terminal:
            break
        time.sleep(0.02)
    took = time.monotonic() - started
    if view.status != "finished":
        raise SystemExit(f"the job ended {view.status}: {view.error}")
    shutil.rmtree(files.directory)
    return took


def run_cli(log: Path, unique: bool, out: Path) -> float:
    """``ipgeo bulk`` on the same file (NDJSON, as the job writes); the wall time."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "ipgeo", "bulk", log.name, "--format", "ndjson", "-o", str(out),
         "--unique" if unique else "--per-line"],
        cwd=log.parent, check=True, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    took = time.monotonic() - started
    out.unlink()
    return took


def main() -> None:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--chunk-size", default="8M", help="IPGEO_JOB_CHUNK_SIZE (default 8M)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--rounds", type=int, default=3, help="jobs per worker count")
    parser.add_argument("--unique", action="store_true", help="one row per distinct IP")
    parser.add_argument("--log", type=Path, default=None, help="use this log (named access.log)")
    args = parser.parse_args()
    chunk_size = parse_size(64 * 1024, 1024**4)(args.chunk_size, "--chunk-size")
    counts = [int(item) for item in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="ipgeo-bench-jobs-") as temp:
        tmp = Path(temp)
        log = args.log
        if log is None:
            (tmp / "log").mkdir()
            log = write_log_file(tmp / "log" / NAME, args.lines)
        size = log.stat().st_size
        server, url = start_redis(tmp)
        env = {key: value for key, value in os.environ.items() if not key.startswith("IPGEO_")}
        env |= {
            "IPGEO_DATA_DIR": str(tmp / "data"),
            "IPGEO_REDIS_URL": url,
            "IPGEO_JOB_CHUNK_SIZE": str(chunk_size),
            "IPGEO_DNS_SERVERS": "127.0.0.1:9",
        }
        settings = Settings.from_env({k: v for k, v in env.items() if k.startswith("IPGEO_")})
        client = redis.Redis.from_url(url)
        results: dict[str, list[float]] = {
            "ipgeo bulk": [run_cli(log, args.unique, tmp / "out") for _ in range(args.rounds)]
        }
        try:
            for count in counts:
                quiet = (tmp / f"workers-{count}.log").open("wb")
                workers = [
                    start_worker_process(url, env, quiet, name=f"bench-{count}-{n}")
                    for n in range(count)
                ]
                try:
                    for n in range(count):
                        while not worker_registered(url, f"bench-{count}-{n}"):
                            time.sleep(0.1)
                    run_job(client, settings, log, args.unique)  # warm-up
                    results[f"{count} worker(s)"] = [
                        run_job(client, settings, log, args.unique) for _ in range(args.rounds)
                    ]
                finally:
                    for worker in workers:
                        stop_worker(worker, os.getpid())
                    quiet.close()
        finally:
            client.close()
            server.terminate()
            server.wait()
    mode = "unique" if args.unique else "per-line"
    print(f"\n{args.lines:,} lines ({size / 1e6:.0f} MB), {mode}, chunks of {args.chunk_size}, "
          f"{os.cpu_count()} CPUs, {args.rounds} round(s); median (min)\n")  # fmt: skip
    print("| run | wall time s | lines/s | speed-up vs 1 worker |")
    print("|---|---|---|---|")
    base = statistics.median(results[f"{counts[0]} worker(s)"])
    for label, times in results.items():
        median = statistics.median(times)
        print(
            f"| {label} | {median:.2f} ({min(times):.2f}) | {args.lines / median:,.0f} "
            f"| {base / median:.2f}x |"
        )


if __name__ == "__main__":
    main()
