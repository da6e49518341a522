"""The ``ipgeo`` command line."""

from __future__ import annotations

import click

from ipgeo import __version__
from ipgeo.cli.bulk import bulk
from ipgeo.cli.common import load_service, load_settings
from ipgeo.cli.dashboard import dashboard
from ipgeo.cli.db import db
from ipgeo.cli.deploy import healthcheck, nginx
from ipgeo.cli.lookup import lookup
from ipgeo.cli.nginx_conf import nginx_conf
from ipgeo.cli.serve import serve
from ipgeo.cli.up import up
from ipgeo.cli.worker import worker

__all__ = ["load_service", "load_settings", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ipgeo")
def main() -> None:
    """ipgeo: self-hosted IP geolocation."""


main.add_command(lookup)
main.add_command(serve)
main.add_command(db)
main.add_command(nginx_conf)
main.add_command(bulk)
main.add_command(worker)
main.add_command(up)
main.add_command(nginx)
main.add_command(healthcheck)
main.add_command(dashboard)
