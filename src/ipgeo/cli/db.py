"""``ipgeo db``: database information and maintenance."""

from __future__ import annotations

import click

from ipgeo.cli.common import load_service, load_settings
from ipgeo.cli.db_timezones import load_timezones
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
