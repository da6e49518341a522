"""``ipgeo serve``: run the web service under a production WSGI server."""

from __future__ import annotations

import click

from ipgeo.cli.common import load_service, load_settings, setup_logging
from ipgeo.web import create_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes.")
def serve(host: str, port: int, workers: int | None) -> None:
    """Serve the web app and API with gunicorn."""
    from ipgeo.serve import serve as run_server

    settings = load_settings()
    setup_logging(settings)
    app = create_app(settings, load_service(settings))
    run_server(app, host, port, workers)
