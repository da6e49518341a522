"""``ipgeo db``: database information and maintenance."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from ipgeo.cli.common import load_service, load_settings
from ipgeo.cli.db_timezones import load_timezones
from ipgeo.dbupdate.config import SOURCES
from ipgeo.formats import to_json


@click.group()
def db() -> None:
    """Database commands."""


db.add_command(load_timezones)


@db.command("info")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Show metadata of the configured databases."""
    service = load_service(load_settings())
    infos = [item.as_dict() for item in service.databases]
    if as_json:
        click.echo(to_json(infos).decode())
        return
    for item in infos:
        click.echo(f"{item['path']}")
        for key in ("database_type", "build_date", "ip_version", "node_count", "record_size"):
            click.echo(f"  {key:<14} {item[key]}")
        click.echo(f"  {'languages':<14} {', '.join(item['languages'])}")


@db.command("verify")
def verify() -> None:
    """Walk every configured database completely and decode every record."""
    from ipgeo.geo import DatabaseError

    service = load_service(load_settings())
    databases = [service.city] + ([service.asn] if service.asn else [])
    for database in databases:
        try:
            count = database.verify()
        except (DatabaseError, ValueError) as exc:
            raise click.ClickException(f"{database.path}: corrupt: {exc}") from None
        click.echo(f"{database.path}: ok ({count} networks)")


@db.command("update")
@click.option(
    "--config",
    "conf_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="A geoipupdate GeoIP.conf (AccountID, LicenseKey, EditionIDs, DatabaseDirectory, Host).",
)
@click.option(
    "--url",
    "urls",
    multiple=True,
    metavar="[NAME=]URL",
    help="A plain .mmdb, .mmdb.gz or .tar.gz URL (repeatable); #sha256=HEX adds a checksum.",
)
@click.option(
    "--source",
    type=click.Choice(SOURCES),
    default=None,
    help="dbip-lite: DB-IP's free monthly City and ASN Lite databases (no account); auto: "
    "MaxMind or --url when configured, else dbip-lite.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to write the databases to (overrides DatabaseDirectory / IPGEO_DB_DIR).",
)
@click.option(
    "--retry-for",
    type=click.FloatRange(0, 3600),
    default=None,
    help="Seconds to keep retrying network errors and 5xx answers (default 300).",
)
@click.option(
    "--every",
    default=None,
    metavar="DURATION",
    help="Keep running and update again after this long (e.g. 24h, 90m); for a compose service.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per database.")
def update(
    conf_file: Path | None,
    urls: tuple[str, ...],
    source: str | None,
    directory: Path | None,
    retry_for: float | None,
    every: str | None,
    as_json: bool,
) -> None:
    """Download new databases (geoipupdate protocol, DB-IP Lite or plain URLs); install atomically.

    A running service picks the new files up without a restart. On any failure the database
    already in place stays untouched and the command exits with status 1.
    """
    from ipgeo.dbupdate import UpdateError, UpdateResult, build_config, run_update
    from ipgeo.dbupdate.config import parse_duration
    from ipgeo.dbupdate.dbip import PRODUCTS, dbip_filename

    settings = load_settings()
    try:
        config = build_config(settings, conf_file, urls, directory, retry_for, source)
        interval = parse_duration(every) if every is not None else None
    except UpdateError as exc:
        raise click.ClickException(str(exc)) from None
    if interval is not None and interval < 60:
        raise click.BadParameter("must be at least 1m", param_hint="--every")

    def show(result: UpdateResult) -> None:
        if as_json:
            click.echo(to_json(result.as_dict()).decode())
        elif result.status == "failed":
            click.echo(f"{result.name}: FAILED: {result.error}", err=True)
        elif result.status == "unchanged":
            click.echo(f"{result.name}: up to date ({result.path})")
        else:
            click.echo(
                f"{result.name}: updated to {result.database_type} built {result.build_date} "
                f"({result.path})"
            )

    targets = {config.directory / f"{edition}.mmdb" for edition in config.editions}
    targets |= {config.directory / url.filename for url in config.urls}
    if config.dbip_url is not None:
        targets |= {config.directory / dbip_filename(product) for product in PRODUCTS}
    for variable, path in (("IPGEO_CITY_DB", settings.city_db), ("IPGEO_ASN_DB", settings.asn_db)):
        if path is not None and path not in targets:
            click.echo(
                f"note: {variable}={path} is not among the files this updates "
                f"({', '.join(sorted(str(t) for t in targets))}); the service will not see them",
                err=True,
            )
    if interval is None:
        try:
            results = run_update(config, show)
        except UpdateError as exc:
            raise click.ClickException(str(exc)) from None
        if any(result.status == "failed" for result in results):
            sys.exit(1)
        return
    # As PID 1 in a container SIGTERM is ignored unless handled: stop promptly on it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    while True:
        try:
            run_update(config, show)
        except UpdateError as exc:
            click.echo(f"update failed: {exc}", err=True)
        click.echo(f"next update in {every}", err=True)
        time.sleep(interval)
