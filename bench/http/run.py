"""HTTP benchmark of ipgeo against baselines: ``python -m bench.http --help``.

Starts each configuration on free loopback ports in a private temp dir, loads it with wrk
(a random public IPv4 per request), stops everything it started, and writes a Markdown
table and a JSON document with req/s, latency percentiles, errors and ratios to B3 and B1.
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: python bench/http/run.py
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import datetime as dt
import importlib.metadata
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from bench.http.addresses import excluded_ranges
from bench.http.configs import (
    Config,
    Options,
    all_configs,
    uwsgi_binary,
)
from bench.http.deploy import DEFAULT_DEPLOY_DIR, ROOT, deploy_dir
from bench.http.echoip import DEFAULT_PEERS_DIR, default_cache_dir
from bench.http.measure import (
    BATCH_PATH,
    lua_scripts,
    measure_config,
    not_measured,
    prepare_configs,
)
from bench.http.nginx import nginx_binary
from bench.http.report import (
    Measurement,
    add_ratios,
    cpu_table,
    json_document,
    markdown_table,
    median_rounds,
)
from bench.http.wrk import WrkError, wrk_binary
from ipgeo.geo.database import bundled_city_db

REFERENCES = ("b3", "b1")
# The baselines and the peer have no batch endpoint.
BATCH_CONFIGS = ("ipgeo-gunicorn", "ipgeo-nginx-uwsgi", "ipgeo-up")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError("give at least one positive number")
    return values


def parse_args(argv: list[str] | None, names: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.http",
        description="Measure ipgeo and the baselines with wrk on loopback (see "
        "docs/benchmarks.md). Needs wrk and nginx (Debian packages) and the dev extra.",
    )
    parser.add_argument(
        "--only", help=f"comma-separated configs to run (default: all): {', '.join(names)}"
    )
    parser.add_argument(
        "--connections", type=_int_list, default=[100], help="e.g. 100,1000 (default: 100)"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (default 10)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the whole sequence N times, report each config's median round (default 1)",
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--warmup", type=int, default=2, help="unreported warm-up seconds before each run"
    )
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="wrk's per-request timeout, s (default 2)"
    )
    parser.add_argument(
        "--web-concurrency",
        type=int,
        help="WEB_CONCURRENCY for the ipgeo configs (default: the deployment's own default)",
    )
    parser.add_argument(
        "--deploy-dir",
        type=Path,
        default=DEFAULT_DEPLOY_DIR,
        help="deployment configs to use for ipgeo (default: the repo's deploy/)",
    )
    parser.add_argument(
        "--peers-dir",
        type=Path,
        default=DEFAULT_PEERS_DIR,
        help=f"the peers' sources and build scripts (default: {DEFAULT_PEERS_DIR})",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=ROOT / "bench" / "results",
        help="where the .md and .json reports go (default: bench/results/)",
    )
    parser.add_argument(
        "--keep-temp", action="store_true", help="keep the temp dir (configs and logs)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=0,
        help=f"POST N random addresses per request to {BATCH_PATH} and report lookups/s "
        f"(only {', '.join(BATCH_CONFIGS)}; default 0: one GET lookup per request)",
    )
    args = parser.parse_args(argv)
    if args.batch < 0 or args.batch > 100_000:
        parser.error("--batch must be between 0 and 100000")
    if args.duration < 1 or args.duration > 600:
        parser.error("--duration must be between 1 and 600 seconds")
    if args.rounds < 1 or args.rounds > 20:
        parser.error("--rounds must be between 1 and 20")
    if args.warmup < 0 or args.warmup > 60:
        parser.error("--warmup must be between 0 and 60 seconds")
    if args.only:
        wanted = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown or not wanted:
            parser.error(f"unknown config(s) {', '.join(unknown)}; choose from {', '.join(names)}")
        args.only = wanted
    else:
        args.only = names
    if args.batch:
        args.only = [name for name in args.only if name in BATCH_CONFIGS]
        if not args.only:
            parser.error(f"--batch measures only {', '.join(BATCH_CONFIGS)}")
    return args


def _raise_interrupt(signum: int, _: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _raise_open_files_limit() -> int:
    """1000 connections need more than the usual 1024 file descriptors (children inherit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (out.stdout + out.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_info(configs: list[Config]) -> dict[str, Any]:
    """What the run was measured on (the machine may be shared: the load is recorded too)."""
    packages = ("flask", "gunicorn", "pyuwsgi", "geoip2", "maxminddb", "orjson")
    versions = {name: importlib.metadata.version(name) for name in packages}
    versions["python"] = platform.python_version()
    versions["wrk"] = _version([wrk_binary(), "--version"])
    if any(config.needs_nginx for config in configs):
        versions["nginx"] = _version([nginx_binary(), "-v"])
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_at_start": [round(value, 2) for value in os.getloadavg()],
        "versions": versions,
    }


def _check_tools(configs: list[Config]) -> None:
    wrk_binary()
    if any(config.needs_nginx for config in configs):
        nginx_binary()
    if any(config.needs_uwsgi for config in configs):
        uwsgi_binary()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; exit status 1 when a configuration failed to start or measure."""
    names = [config.name for config in all_configs(deployed=True)]
    args = parse_args(argv, names)
    deploy = deploy_dir(args.deploy_dir.resolve())
    configs = [config for config in all_configs(deploy is not None) if config.name in args.only]
    try:
        _check_tools(configs)
    except (WrkError, RuntimeError) as exc:
        print(f"bench/http: {exc}", file=sys.stderr)
        return 2
    # Stop cleanly on Ctrl-C, kill or hang-up (even if started with SIGINT ignored, as `&` does).
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    files = _raise_open_files_limit()
    started = dt.datetime.now(dt.UTC)
    command = "python -m bench.http " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(
        f"bench/http: {len(configs)} config(s), connections {args.connections}, "
        f"{args.duration} s each, {args.rounds} round(s); "
        f"ipgeo deploy configs: {deploy or 'absent (fallback)'}"
    )
    metadata: dict[str, Any] = {
        "command": command.strip(),
        "started": started.isoformat(timespec="seconds"),
        "wrk": f"-t{args.threads} -d{args.duration}s --timeout {args.timeout:g}s --latency",
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "batch": args.batch,
        "deploy": str(deploy) if deploy else None,
        "web_concurrency": args.web_concurrency,
        "configs": {
            config.name: {"request": config.request, "settings": dict(config.settings)}
            for config in configs
        },
        "open_files_limit": files,
        "machine": machine_info(configs),
    }
    measurements: list[Measurement] = []
    temp = Path(tempfile.mkdtemp(prefix="ipgeo-bench-http-"))
    try:
        print("  reading the database's gaps (addresses without a record)...", flush=True)
        scripts = lua_scripts(configs, args.batch, excluded_ranges(bundled_city_db()), temp)
        options = Options(
            deploy=deploy,
            web_concurrency=args.web_concurrency,
            peers_dir=args.peers_dir.resolve(),
            cache_dir=default_cache_dir(),
        )
        unavailable = prepare_configs(configs, options)
        for round_no in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_no} of {args.rounds}", flush=True)
            for config in configs:
                if config.name in unavailable:
                    measurements += not_measured(config, args, unavailable[config.name], round_no)
                    continue
                workdir = temp / f"{config.name}-r{round_no}"
                workdir.mkdir()
                script = scripts[config.name]
                measurements += measure_config(config, options, args, script, workdir, round_no)
    except KeyboardInterrupt:
        print("bench/http: interrupted; everything started has been stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_temp:
            print(f"bench/http: configs and logs kept in {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)
    reported = median_rounds(measurements)
    add_ratios(reported, REFERENCES)
    table = markdown_table(reported, REFERENCES) + "\n" + cpu_table(reported)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stem = args.output_dir / f"http-{started:%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".md").write_text(
        f"`{metadata['command']}` ({metadata['started']}, wrk {metadata['wrk']})\n\n{table}"
    )
    stem.with_suffix(".json").write_text(
        json.dumps(json_document(reported, measurements, metadata), indent=2) + "\n"
    )
    print("\n" + table)
    print(f"bench/http: wrote {stem}.md and {stem}.json")
    return 1 if any(item.result is None and not item.skipped for item in reported) else 0


if __name__ == "__main__":
    raise SystemExit(main())
