"""``ipgeo worker``: run an RQ worker for background bulk jobs."""

from __future__ import annotations

import click

from ipgeo.cli.common import load_service, load_settings, setup_logging


@click.command()
@click.option("--burst", is_flag=True, help="Stop once the queue is empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's random name).")
def worker(burst: bool, name: str | None) -> None:
    """Run a (forking) RQ worker on the `bulk` queue, with the databases preloaded.

    It connects to IPGEO_REDIS_URL, the Redis the web app uses. `ipgeo serve` starts one worker
    by itself (see --job-workers), also with its embedded Redis.
    """
    from ipgeo.jobs.worker import JobsUnavailable, run_worker

    settings = load_settings()
    if not settings.redis_url:
        raise click.ClickException(
            "IPGEO_REDIS_URL is unset: a worker needs the Redis of the web app "
            "(`ipgeo serve` starts its own worker with its embedded Redis)"
        )
    setup_logging(settings)
    service = load_service(settings)
    try:
        run_worker(settings, service, burst=burst, name=name)
    except JobsUnavailable as exc:
        raise click.ClickException(str(exc)) from None
