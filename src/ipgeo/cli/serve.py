"""``ipgeo serve``: run the web service under a production WSGI server."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os

import click

from ipgeo.cli.common import load_service, load_settings, setup_logging, stale_data_warning
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
@click.option(
    "--job-workers",
    type=click.IntRange(0, 16),
    default=None,
    help="Background job workers (`ipgeo worker`) to start beside the server. "
    "Default: 1 with the embedded Redis, else 0 (run `ipgeo worker` yourself).",
)
def serve(
    host: str, port: int, workers: int | None, embedded_redis: bool, job_workers: int | None
) -> None:
    """Serve the web app and API with gunicorn."""
    from ipgeo.embedded_redis import EmbeddedRedis, EmbeddedRedisError
    from ipgeo.jobs.worker import start_worker_process, stop_worker
    from ipgeo.serve import serve as run_server

    settings = load_settings()
    setup_logging(settings)
    service = load_service(settings)
    if (stale := stale_data_warning(settings, service)) is not None:
        logging.getLogger("ipgeo").warning("%s", stale)
    with contextlib.ExitStack() as stack:
        if settings.redis_url is None and embedded_redis:
            embedded = EmbeddedRedis(settings.data_dir / "redis")
            try:
                stack.enter_context(embedded)
            except (EmbeddedRedisError, OSError) as exc:
                raise click.ClickException(
                    f"cannot start the embedded Redis: {exc} (or run with --no-embedded-redis)"
                ) from None
            settings = dataclasses.replace(settings, redis_url=embedded.url)
            job_workers = 1 if job_workers is None else job_workers
        if job_workers and not settings.redis_url:
            raise click.ClickException("--job-workers needs Redis (IPGEO_REDIS_URL)")
        for _ in range(job_workers or 0):
            assert settings.redis_url is not None
            stack.callback(stop_worker, start_worker_process(settings.redis_url), os.getpid())
        run_server(create_app(settings, service), host, port, workers)
