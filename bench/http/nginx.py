"""nginx for the benchmark: the binary, bench-local configs for the baselines, the runner."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
from pathlib import Path

from bench.http.processes import Stack

INSTALL_HINT = "nginx is not installed: `sudo apt-get install nginx` (Debian/Ubuntu)"
SYSTEM_MIME_TYPES = Path("/etc/nginx/mime.types")
SYSTEM_UWSGI_PARAMS = Path("/etc/nginx/uwsgi_params")


def nginx_binary() -> str:
    """Path of the nginx executable (Debian installs it in /usr/sbin)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return found


def worker_user() -> str | None:
    """The ``user`` for nginx workers: only meaningful (and only set) when we are root."""
    return pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None


def private_paths(run_dir: Path) -> str:
    """http-level directives keeping every file nginx writes inside ``run_dir``."""
    (run_dir / "tmp").mkdir(exist_ok=True)
    return "\n".join(
        f"    {kind}_temp_path {run_dir}/tmp/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )


# Production settings the ipgeo fallback adds to the stock config (see docs/benchmarks.md).
TUNED_MAIN = (
    # Each proxied client holds two descriptors (client + upstream): 1000 clients need more
    # than the usual 1024 soft limit per worker.
    "worker_rlimit_nofile 16384;"
)
TUNED_EVENTS = (
    # nginx's default of 512 connections per worker refuses clients at 1000.
    "worker_connections 4096; "
    # Take every pending connection per wake-up instead of one.
    "multi_accept on;"
)
# The listen queue for connection bursts (default 511; capped by net.core.somaxconn).
TUNED_LISTEN = " backlog=4096"
# One write() per 64 kB of log lines instead of one per request.
TUNED_ACCESS_LOG = " combined buffer=64k flush=1s"


def baseline_conf(
    run_dir: Path,
    port: int,
    location: str,
    worker_connections: int | None = None,
    tuned: bool = False,
) -> str:
    """A Debian-default-like nginx.conf with one server on ``port`` and ``location``'s body.

    Only the bench's private paths differ from a stock install; ``worker_connections`` stays
    at nginx's compiled-in default (512) unless given. ``tuned`` adds the ``TUNED_*``
    production settings (the ipgeo fallback only).
    """
    user = worker_user()
    events = f"worker_connections {worker_connections};" if worker_connections else ""
    if tuned:
        events = TUNED_EVENTS
    return f"""# bench/http: bench-local nginx config (a stock set-up on a private port and prefix)
{f"user {user};" if user else ""}
daemon off;
worker_processes auto;
{TUNED_MAIN if tuned else ""}
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log warn;

events {{ {events} }}

http {{
    include {SYSTEM_MIME_TYPES};
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    access_log {run_dir}/access.log{TUNED_ACCESS_LOG if tuned else ""};
{private_paths(run_dir)}

    server {{
        listen 127.0.0.1:{port}{TUNED_LISTEN if tuned else ""};
        server_name localhost;
        location / {{
{location}
        }}
    }}
}}
"""


def uwsgi_pass_location(socket: Path) -> str:
    """The stock way to hand every request to uWSGI over a unix socket."""
    return f"            include {SYSTEM_UWSGI_PARAMS};\n            uwsgi_pass unix:{socket};"


def start_nginx(stack: Stack, conf: Path) -> None:
    """Run nginx in the foreground on ``conf``, with ``conf``'s directory as its prefix."""
    stack.start(
        "nginx",
        [
            nginx_binary(),
            "-p",
            f"{conf.parent}/",
            "-c",
            str(conf),
            "-e",
            str(conf.parent / "nginx-error.log"),
        ],
        stop_signal=signal.SIGQUIT,  # graceful: finish the open requests, then exit
    )
