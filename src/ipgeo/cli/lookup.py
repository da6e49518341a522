"""``ipgeo lookup``: look up IPs and domain names from the shell."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.table import Table

from ipgeo.cli.common import load_service, load_settings
from ipgeo.formats import cell, to_json
from ipgeo.geo import GeoError


@click.command()
@click.argument("queries", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@click.option("--lang", default=None, help="Language for place names (e.g. de).")
def lookup(queries: tuple[str, ...], as_json: bool, lang: str | None) -> None:
    """Look up IP addresses or domain names."""
    service = load_service(load_settings())
    console = Console()
    failed = False
    for query in queries:
        try:
            row = service.lookup(query, lang=lang).as_dict()
        except GeoError as exc:
            failed = True
            if as_json:
                error = {"query": query, "error": {"code": exc.code, "message": exc.message}}
                sys.stdout.buffer.write(to_json(error) + b"\n")
            else:
                console.print(f"[bold red]{query}[/]: {exc.message}", highlight=False)
            continue
        if as_json:
            sys.stdout.buffer.write(to_json(row) + b"\n")
            continue
        table = Table(title=query, show_header=False, title_justify="left")
        table.add_column("field", style="bold")
        table.add_column("value")
        for key, value in row.items():
            table.add_row(key, cell(value))
        console.print(table)
    sys.stdout.flush()
    if failed:
        sys.exit(1)
