"""``ipgeo dashboard``: rq-dashboard on its own port, as the compose stack runs it."""

from __future__ import annotations

import click

from ipgeo.cli.common import load_settings, setup_logging


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def dashboard(host: str, port: int, workers: int) -> None:
    """Serve rq-dashboard (basic auth, JSON serializer) with gunicorn.

    The same dashboard as /admin/rq in the app: IPGEO_DASHBOARD_USER / IPGEO_DASHBOARD_PASSWORD
    and IPGEO_REDIS_URL are required.
    """
    from ipgeo.serve import GunicornServer
    from ipgeo.web.dashboard import create_dashboard_app

    settings = load_settings()
    setup_logging(settings)
    try:
        app = create_dashboard_app(settings)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "accesslog": "-",
        "errorlog": "-",
        "graceful_timeout": 5,
        "proc_name": "ipgeo-dashboard",
        "control_socket_disable": True,
    }
    GunicornServer(app, options).run()
