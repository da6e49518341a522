"""``ipgeo up``: the production topology as supervised processes, without containers."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ipgeo.cli.common import load_service, load_settings, stale_data_warning
from ipgeo.cli.tls import tls_files, tls_options
from ipgeo.up.supervisor import Interrupted, Supervisor, SupervisorError
from ipgeo.up.topology import (
    ACCESS_LOG_OFF,
    ACCESS_LOG_STDOUT,
    TopologyError,
    UpOptions,
    access_log_target,
    build_children,
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--server",
    type=click.Choice(["uwsgi", "gunicorn"]),
    default="uwsgi",
    show_default=True,
    help="The WSGI server behind nginx.",
)
@click.option("--no-nginx", is_flag=True, help="Serve HTTP from the WSGI server directly.")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="WSGI worker processes.")
@click.option(
    "--job-workers",
    type=click.IntRange(0, 16),
    default=1,
    show_default=True,
    help="Background job workers (`ipgeo worker`) to run.",
)
@click.option(
    "--access-log",
    metavar="PATH|-|off",
    default=None,
    help="Where nginx (without nginx: the WSGI server) logs every request: a file, `-` for "
    "this command's stdout, or `off`. Default: $IPGEO_DATA_DIR/log/access.log.",
)
@tls_options
def up(
    host: str,
    port: int,
    server: str,
    no_nginx: bool,
    workers: int | None,
    job_workers: int,
    access_log: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    hsts: bool,
) -> None:
    """Run nginx, uWSGI (or gunicorn), a job worker and Redis together until Ctrl-C.

    nginx is used when installed. Redis is the embedded one of `ipgeo serve` (the
    embedded-redis extra's redis-server, files in the data directory) unless IPGEO_REDIS_URL
    names a server; the app, its rate limits and the workers all use that one URL. If any
    process dies, the others are stopped and the command fails. Requests are logged by nginx
    to --access-log; start-up messages and errors of every program are shown here. With
    --tls-cert and --tls-key nginx serves HTTPS (TLS 1.2 and 1.3, HTTP/2) on the port.
    """
    settings = load_settings()
    service = load_service(settings)  # a bad database fails here, before anything starts
    stale = stale_data_warning(settings, service)
    service.close()
    options = UpOptions(
        host=host,
        port=port,
        server=server,
        use_nginx=not no_nginx,
        workers=workers,
        job_workers=job_workers,
        access_log=access_log,
        tls=tls_files(tls_cert, tls_key, hsts),
    )
    run_dir = settings.data_dir / "run"
    supervisor = Supervisor(state_file=run_dir / "processes.json")
    supervisor.handle_signals()
    if stale is not None:
        supervisor.log(f"warning: {stale}")
    try:
        children = build_children(settings, options, run_dir, warn=supervisor.log)
        for child in children:
            supervisor.start(child)
    except Interrupted as exc:
        supervisor.log(f"stopping: {exc}")
        supervisor.stop()
        sys.exit(0)
    except (TopologyError, SupervisorError, OSError) as exc:
        supervisor.stop()
        raise click.ClickException(str(exc)) from None
    front = "nginx" if any(c.name == "nginx" for c in children) else server
    scheme = "https" if options.tls else "http"
    url = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    supervisor.log(f"ipgeo listening on {url} ({front}); Ctrl-C stops everything")
    target = access_log_target(settings, options)
    if target == ACCESS_LOG_STDOUT:
        supervisor.log("access log: this output, unprefixed")
    elif target == ACCESS_LOG_OFF:
        supervisor.log("access log: off")
    else:
        supervisor.log(f"access log: {target} (follow it with: tail -f {shlex.quote(target)})")
    sys.exit(supervisor.run())
