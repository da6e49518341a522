"""``ipgeo db load-timezones``: fill the PostGIS time-zone polygon table."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ipgeo.cli.common import load_settings

_PHASES = {
    "polygons": "Cutting and copying polygons",
    "index": "Building the GiST index",
    "swap": "Swapping the new table in",
}


@click.command("load-timezones")
@click.option(
    "--from",
    "source_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A timezone-boundary-builder GeoJSON file (or .zip of one) instead of the polygons "
    "shipped with timezonefinder.",
)
@click.option(
    "--database-url",
    envvar="IPGEO_DATABASE_URL",
    show_envvar=True,
    help="PostgreSQL URL (default: IPGEO_DATABASE_URL).",
)
def load_timezones(source_file: Path | None, database_url: str | None) -> None:
    """Load time-zone polygons into PostGIS, swapping them in atomically."""
    from ipgeo.geo.timezone_loader import LoadError
    from ipgeo.geo.timezone_loader import load_timezones as load
    from ipgeo.geo.timezone_polygons import (
        GeoJsonSource,
        PolygonSource,
        PolygonSourceError,
        TimezonefinderSource,
    )

    settings = load_settings()
    url = database_url or settings.timezones.database_url
    if not url:
        raise click.UsageError("set IPGEO_DATABASE_URL (or --database-url) to a PostgreSQL URL")
    console = Console(stderr=True)
    try:
        source: PolygonSource = (
            GeoJsonSource(source_file) if source_file else TimezonefinderSource()
        )
    except PolygonSourceError as exc:
        raise click.ClickException(str(exc)) from None

    with Progress(
        TextColumn("{task.description:<30}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        tasks: dict[str, int] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = int(progress.add_task(_PHASES.get(phase, phase), total=total))
            progress.update(tasks[phase], completed=done, total=total)  # type: ignore[arg-type]

        try:
            summary = load(url, source, report)
        except (LoadError, PolygonSourceError) as exc:
            raise click.ClickException(f"loading failed, nothing changed: {exc}") from None
    click.echo(
        f"Loaded {summary.zones} zones, {summary.polygons} polygons "
        f"({summary.pieces} indexed pieces) from {summary.source} "
        f"in {summary.seconds:.1f} s."
    )
