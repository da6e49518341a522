"""The configurations the HTTP benchmark measures, and how each one is started."""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bench.http.deploy import render_nginx
from bench.http.echoip import LOOKUP_PREFIX as ECHOIP_LOOKUP_PREFIX
from bench.http.echoip import build_echoip, start_echoip
from bench.http.ipgeo_up import (
    PROTECTED_SETTINGS,
    QUERY_SUFFIX,
    adopt_programs,
    check_protected_answer,
    check_query_answer,
    up_starter,
)
from bench.http.nginx import baseline_conf, start_nginx, uwsgi_pass_location
from bench.http.processes import ReadyAnswer, Stack, free_port

LOOKUP_PREFIX = "/api/v1/lookup/"
BASELINE_PROCESSES = 4  # B2/B3: the "4 workers / 4 processes" on this 2-core machine


@dataclass(frozen=True)
class Options:
    """What a configuration needs to know to start."""

    deploy: Path | None  # the deploy/ dir, or None for the bench-local fallback
    web_concurrency: int | None  # WEB_CONCURRENCY for the ipgeo configs (None: their default)
    peers_dir: Path | None = None  # the peers' sources and build scripts (../shared/peers)
    cache_dir: Path | None = None  # where peers are built (outside the repository)


Starter = Callable[[Stack, Options], str]  # starts the processes, returns the base URL
# Runs once the lookup path answered: checks the answer is what the config claims and adopts
# process groups the started processes started (raises StartError).
ReadyHook = Callable[[Stack, ReadyAnswer], None]


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    name: str
    label: str
    start: Starter
    needs_nginx: bool = False
    needs_uwsgi: bool = False
    # Every request is GET <path_prefix><random address><path_suffix>.
    path_prefix: str = LOOKUP_PREFIX
    path_suffix: str = ""
    on_ready: ReadyHook | None = None
    # Runs once before the first round (building a peer); raises ConfigUnavailable to skip.
    prepare: Callable[[Options], None] | None = None
    # The settings a user would set (environment), recorded in the report.
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def request(self) -> str:
        """What each request asks for, for the report."""
        return f"GET {self.path_prefix}<random IPv4>{self.path_suffix}"


def uwsgi_binary() -> str:
    """The venv's uWSGI (PyPI ``pyuwsgi``): it embeds this very Python and its packages."""
    path = Path(sys.executable).parent / "uwsgi"
    if not path.is_file():
        raise RuntimeError(
            f"{path} not found: install the dev extra (`pip install -e '.[dev]'`, "
            "which brings the pyuwsgi wheel)"
        )
    return str(path)


def _base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def start_static_nginx(stack: Stack, _: Options) -> str:
    """B0: nginx serving one ~300-byte JSON file for every lookup path."""
    from bench.baselines.floor_app import ANSWER

    www = stack.workdir / "www"
    www.mkdir()
    (www / "lookup.json").write_bytes(ANSWER)
    port = free_port()
    location = (
        f"            root {www};\n"
        "            default_type application/json;\n"
        "            try_files /lookup.json =404;"
    )
    conf = stack.workdir / "nginx.conf"
    # Enough connections that 1000 clients measure the ceiling, not the 512 default.
    conf.write_text(baseline_conf(stack.workdir, port, location, worker_connections=4096))
    start_nginx(stack, conf)
    return _base(port)


def start_flask_dev(stack: Stack, _: Options) -> str:
    """B1: the seed-style app on the Flask development server (threaded, its default)."""
    port = free_port()
    stack.start(
        "flask",
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "bench.baselines.seed_app",
            "run",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    )
    return _base(port)


def start_gunicorn_baseline(stack: Stack, _: Options) -> str:
    """B2: Flask + geoip2 (Reader opened once) under gunicorn -w 4, default sync workers."""
    port = free_port()
    stack.start(
        "gunicorn",
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(BASELINE_PROCESSES),
            "-b",
            f"127.0.0.1:{port}",
            "bench.baselines.geoip2_app:app",
        ],
    )
    return _base(port)


# The bench fallback for "ipgeo as deployed" while deploy/ is absent: the production
# settings of deploy/uwsgi.ini that matter for throughput, with the reason for each.
TUNED_UWSGI = [
    # The kernel queue for connection bursts while every worker is busy: the default 100
    # overflows at 1000 clients and nginx answers 502 (capped by net.core.somaxconn).
    # Twice the clients, not just their number: a client that gives up leaves its upstream
    # connection queued until a worker accepts it, so 1000 clients reconnecting (or a warm-up
    # run followed by the measured one) briefly need room for 2000; 1024 overflowed there.
    "--listen",
    "4096",
    # One worker at a time waits in accept(): no thundering herd of wake-ups per connection.
    "--thunder-lock",
    # Long query strings and big headers: the default 4 kB buffer answers them with 502.
    "--buffer-size",
    "32768",
    # Read bodies (the batch endpoint's) fully before the app runs.
    "--post-buffering",
    "65536",
    "--single-interpreter",
    "--enable-threads",
]


def _uwsgi_behind_nginx(stack: Stack, module: str, processes: int, tuned: bool = False) -> str:
    """A careful, default-ish uWSGI (master, N processes, unix socket) behind stock nginx.

    Left at their defaults on purpose: uWSGI's listen backlog (100), nginx's
    worker_connections (512), no thunder-lock, buffers as shipped. Request logging is off
    in uWSGI only (nginx logs every request), as a careful operator would do. ``tuned``
    (the ipgeo fallback only) adds ``TUNED_UWSGI`` and nginx's ``TUNED_NGINX`` settings.
    """
    socket = stack.workdir / "uwsgi.sock"
    stack.start(
        "uwsgi",
        [
            uwsgi_binary(),
            *(TUNED_UWSGI if tuned else []),
            "--master",
            "--processes",
            str(processes),
            "--socket",
            str(socket),
            "--module",
            module,
            "--need-app",
            "--disable-logging",
            "--die-on-term",
            "--vacuum",
            "--pidfile",
            str(stack.workdir / "uwsgi.pid"),
        ],
        stop_signal=signal.SIGINT,  # immediate stop, whatever die-on-term says
    )
    port = free_port()
    conf = stack.workdir / "nginx.conf"
    conf.write_text(
        baseline_conf(stack.workdir, port, uwsgi_pass_location(socket), tuned=tuned)
        if tuned
        else baseline_conf(stack.workdir, port, uwsgi_pass_location(socket))
    )
    start_nginx(stack, conf)
    return _base(port)


def start_b3(stack: Stack, _: Options) -> str:
    """B3: the geoip2 app under uWSGI (4 processes) behind nginx via uwsgi_pass."""
    return _uwsgi_behind_nginx(stack, "bench.baselines.geoip2_app:app", BASELINE_PROCESSES)


def start_b3_floor(stack: Stack, _: Options) -> str:
    """B3-floor: the B3 stack with a Flask view that returns a constant."""
    return _uwsgi_behind_nginx(stack, "bench.baselines.floor_app:app", BASELINE_PROCESSES)


def start_b4(stack: Stack, _: Options) -> str:
    """B4: Flask + maxminddb dicts + orjson on the B3 stack (uWSGI 4 procs, stock nginx)."""
    return _uwsgi_behind_nginx(stack, "bench.baselines.maxminddb_app:app", BASELINE_PROCESSES)


def _concurrency_env(options: Options) -> dict[str, str]:
    if options.web_concurrency is None:
        return {}
    return {"WEB_CONCURRENCY": str(options.web_concurrency)}


def start_ipgeo_gunicorn(stack: Stack, options: Options) -> str:
    """ipgeo under gunicorn: deploy/gunicorn.conf.py, or ``ipgeo serve`` without deploy/."""
    port = free_port()
    if options.deploy is not None:
        argv = [sys.executable, "-m", "gunicorn", "-c", str(options.deploy / "gunicorn.conf.py")]
        argv += ["--bind", f"127.0.0.1:{port}", "--pid", str(stack.workdir / "gunicorn.pid")]
        # Serving HTTP itself (no nginx in front), gunicorn logs the requests, as `ipgeo up`
        # runs it without nginx.
        argv += ["--access-logfile", "-"]
    else:
        argv = [sys.executable, "-m", "ipgeo", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if options.web_concurrency is not None:
            argv += ["--workers", str(options.web_concurrency)]
    stack.start("gunicorn", argv, env=_concurrency_env(options))
    return _base(port)


def start_ipgeo_deployed(stack: Stack, options: Options) -> str:
    """ipgeo as deployed: nginx + uWSGI from deploy/ (or the bench-local fallback)."""
    if options.deploy is None:
        processes = options.web_concurrency or BASELINE_PROCESSES
        return _uwsgi_behind_nginx(stack, "ipgeo.wsgi:app", processes, tuned=True)
    socket = stack.workdir / "uwsgi.sock"
    stack.start(
        "uwsgi",
        [
            uwsgi_binary(),
            "--ini",
            str(options.deploy / "uwsgi.ini"),
            "--socket",
            str(socket),
            "--pidfile",
            str(stack.workdir / "uwsgi.pid"),
        ],
        stop_signal=signal.SIGINT,
        env=_concurrency_env(options),
    )
    port = free_port()
    start_nginx(stack, render_nginx(options.deploy, stack.workdir, port, socket))
    return _base(port)


def all_configs(deployed: bool) -> list[Config]:
    """Every configuration, in the order they run and are reported."""
    source = "deploy/" if deployed else "bench fallback config: deploy/ absent"
    return [
        Config("b0", "B0 nginx, static ~300-byte JSON", start_static_nginx, needs_nginx=True),
        Config("b1", "B1 Flask dev server, geoip2 Reader per request", start_flask_dev),
        Config("b2", "B2 Flask + geoip2, gunicorn -w 4 sync", start_gunicorn_baseline),
        Config(
            "b3",
            "B3 Flask + geoip2, uWSGI 4 procs behind nginx",
            start_b3,
            needs_nginx=True,
            needs_uwsgi=True,
        ),
        Config(
            "b3-floor",
            "B3-floor: B3 stack, constant view",
            start_b3_floor,
            needs_nginx=True,
            needs_uwsgi=True,
        ),
        Config(
            "b4",
            "B4 Flask + maxminddb + orjson, uWSGI 4 procs behind nginx",
            start_b4,
            needs_nginx=True,
            needs_uwsgi=True,
        ),
        Config(
            "ipgeo-gunicorn",
            f"ipgeo, gunicorn ({'deploy/gunicorn.conf.py' if deployed else 'ipgeo serve'})",
            start_ipgeo_gunicorn,
        ),
        Config(
            "ipgeo-nginx-uwsgi",
            f"ipgeo, nginx + uWSGI ({source})",
            start_ipgeo_deployed,
            needs_nginx=True,
            needs_uwsgi=True,
        ),
        Config(
            "ipgeo-up",
            "ipgeo up, defaults",
            up_starter({}),
            needs_nginx=True,
            needs_uwsgi=True,
            on_ready=adopt_programs,
        ),
        Config(
            "ipgeo-up-query",
            "ipgeo up, defaults; ?fields=(7)&lang=de",
            up_starter({}),
            needs_nginx=True,
            needs_uwsgi=True,
            path_suffix=QUERY_SUFFIX,
            on_ready=check_query_answer,
        ),
        Config(
            "ipgeo-up-protected",
            "ipgeo up, IPGEO_ALLOWED + IPGEO_RATE_LIMIT",
            up_starter(PROTECTED_SETTINGS),
            needs_nginx=True,
            needs_uwsgi=True,
            on_ready=check_protected_answer,
            settings=PROTECTED_SETTINGS,
        ),
        Config(
            "echoip",
            "echoip (Go peer), /json?ip=",
            start_echoip,
            path_prefix=ECHOIP_LOOKUP_PREFIX,
            prepare=build_echoip,
        ),
    ]


def answer_summary(body: bytes) -> str:
    """A short description of the readiness answer (its size, fields and country, when JSON)."""
    try:
        data = json.loads(body)
    except ValueError:
        return f"{len(body)} bytes, not JSON"
    if not isinstance(data, dict):
        return f"{len(body)} bytes, JSON {type(data).__name__}"
    return f"{len(body)} bytes, {len(data)} fields, country_iso={data.get('country_iso')}"
