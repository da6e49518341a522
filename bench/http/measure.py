"""One configuration measured: started, checked, loaded by wrk, its CPU counted, stopped."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.http.addresses import Range
from bench.http.configs import Config, Options, answer_summary
from bench.http.deploy import ROOT
from bench.http.ipgeo_up import SUPERVISOR
from bench.http.processes import ConfigUnavailable, Stack, StartError
from bench.http.report import Measurement, cpu_summary
from bench.http.wrk import WrkError, run_wrk, write_lua_script

READY_ADDRESS = "8.8.8.8"
BATCH_PATH = "/api/v1/batch"


def server_environment(workdir: Path) -> dict[str, str]:
    """The environment every configuration starts in: ours, without the caller's settings.

    ``IPGEO_*`` and ``WEB_CONCURRENCY`` come from the configuration (and ``--web-concurrency``),
    never from the shell the benchmark was started in.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("IPGEO_") and key != "WEB_CONCURRENCY"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["IPGEO_DATA_DIR"] = str(workdir / "data")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def not_measured(
    config: Config, args: argparse.Namespace, exc: Exception, round_no: int
) -> list[Measurement]:
    """The entries of a configuration that failed to start or cannot run here (skipped)."""
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    skipped = isinstance(exc, ConfigUnavailable)
    return [
        Measurement(
            config.name, config.label, conns, error=first_line, round=round_no, skipped=skipped
        )
        for conns in args.connections
    ]


def measure_config(
    config: Config,
    options: Options,
    args: argparse.Namespace,
    script: Path,
    workdir: Path,
    round_no: int = 1,
) -> list[Measurement]:
    """Start ``config``, run wrk at each connection count, stop it; one entry per count."""
    measurements: list[Measurement] = []
    ready_path = config.path_prefix + READY_ADDRESS + config.path_suffix
    with Stack(workdir, server_environment(workdir)) as stack:
        try:
            base = config.start(stack, options)
            answer = stack.wait_ready(base + ready_path)
            if config.on_ready is not None:
                config.on_ready(stack, answer)
        except (StartError, RuntimeError, OSError, ValueError) as exc:
            print(f"  {config.name}: did not start: {exc}", file=sys.stderr)
            return not_measured(config, args, exc, round_no)
        print(f"  {config.name}: up at {base} ({answer_summary(answer.body)})", flush=True)
        for conns in args.connections:
            item = Measurement(config.name, config.label, conns, round=round_no, batch=args.batch)
            item.cores = os.cpu_count() or 1
            try:
                wrk_args = {"threads": args.threads, "connections": conns}
                if args.warmup:
                    run_wrk(base + "/", script, duration_s=args.warmup, **wrk_args)
                item.load_before = round(os.getloadavg()[0], 2)
                cpu_before = stack.cpu_seconds()
                clock_before = time.monotonic()
                item.result, raw = run_wrk(
                    base + "/",
                    script,
                    duration_s=args.duration,
                    timeout_s=args.timeout,
                    **wrk_args,
                )
                item.cpu_window_s = time.monotonic() - clock_before
                cpu_after = stack.cpu_seconds()
                (workdir / f"wrk-c{conns}.txt").write_text(raw)
                res = item.result
                item.cpu_s = {
                    name: max(0.0, cpu_after[name] - cpu_before.get(name, 0.0))
                    for name in cpu_after
                }
                print(
                    f"  {config.name} -c{conns}: {res.requests_per_s:,.0f} req/s, "
                    f"p50 {res.p50_ms:.2f} ms, p99 {res.p99_ms:.2f} ms, "
                    + (
                        f"{res.ok_requests_per_s * args.batch:,.0f} lookups/s, "
                        if args.batch
                        else ""
                    )
                    + f"non-2xx {res.non_2xx_3xx}, socket errors {res.socket_errors}, "
                    f"server CPU µs/req {cpu_summary(item.cpu_us)} "
                    f"(load before: {item.load_before})",
                    flush=True,
                )
                share = item.machine_share(SUPERVISOR)
                if share is not None:
                    print(
                        f"  {config.name} -c{conns}: the ipgeo up process used "
                        f"{item.cpu_s[SUPERVISOR]:.2f} CPU-s, {share:.2%} of the machine",
                        flush=True,
                    )
            except (WrkError, subprocess.TimeoutExpired) as exc:
                item.error = str(exc).splitlines()[0]
                print(f"  {config.name} -c{conns}: wrk failed: {exc}", file=sys.stderr)
            measurements.append(item)
    time.sleep(1)  # let the sockets of the stopped config close before the next one
    return measurements


def lua_scripts(
    configs: list[Config], batch: int, excluded: list[Range], directory: Path
) -> dict[str, Path]:
    """The wrk script of each configuration (one file per distinct request shape)."""
    by_shape: dict[tuple[str, str], Path] = {}
    scripts = {}
    for config in configs:
        shape = (BATCH_PATH, "") if batch else (config.path_prefix, config.path_suffix)
        if shape not in by_shape:
            path = directory / f"lookup-{len(by_shape) + 1}.lua"
            by_shape[shape] = write_lua_script(
                path, shape[0], excluded, batch=batch, path_suffix=shape[1]
            )
        scripts[config.name] = by_shape[shape]
    return scripts


def prepare_configs(configs: list[Config], options: Options) -> dict[str, ConfigUnavailable]:
    """Run each configuration's preparation once (building a peer); the ones that cannot run."""
    unavailable = {}
    for config in configs:
        if config.prepare is None:
            continue
        try:
            config.prepare(options)
        except ConfigUnavailable as exc:
            print(f"  {config.name}: {exc}", file=sys.stderr, flush=True)
            unavailable[config.name] = exc
    return unavailable
