"""``ipgeo serve``: run the web service under a production WSGI server."""

from __future__ import annotations

import contextlib
import dataclasses

import click

from ipgeo.cli.common import load_service, load_settings, setup_logging
from ipgeo.web import create_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="Worker processes.")
@click.option(
    "--embedded-redis/--no-embedded-redis",
    default=True,
    show_default=True,
    help="Start an embedded Redis in IPGEO_DATA_DIR when IPGEO_REDIS_URL is unset.",
)
def serve(host: str, port: int, workers: int | None, embedded_redis: bool) -> None:
    """Serve the web app and API with gunicorn."""
    from ipgeo.embedded_redis import EmbeddedRedis, EmbeddedRedisError
    from ipgeo.serve import serve as run_server

    settings = load_settings()
    setup_logging(settings)
    service = load_service(settings)
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None and embedded_redis:
            embedded = EmbeddedRedis(settings.data_dir / "redis")
            try:
                stack.enter_context(embedded)
            except (EmbeddedRedisError, OSError) as exc:
                raise click.ClickException(f"cannot start the embedded Redis: {exc}") from None
            settings = dataclasses.replace(settings, redis_url=embedded.url)
        run_server(create_app(settings, service), host, port, workers)
