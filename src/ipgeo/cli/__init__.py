"""The ``ipgeo`` command line."""

from __future__ import annotations

import importlib

import click

from ipgeo import __version__
from ipgeo.cli.common import load_service, load_settings

__all__ = ["load_service", "load_settings", "main"]

# Command name -> "module:attribute". Modules are imported only when their command runs, so
# ``ipgeo bulk`` or ``ipgeo lookup`` do not pay for importing the web stack.
_COMMANDS = {
    "lookup": "ipgeo.cli.lookup:lookup",
    "serve": "ipgeo.cli.serve:serve",
    "db": "ipgeo.cli.db:db",
    "nginx-conf": "ipgeo.cli.nginx_conf:nginx_conf",
    "bulk": "ipgeo.cli.bulk:bulk",
    "worker": "ipgeo.cli.worker:worker",
    "up": "ipgeo.cli.up:up",
    "nginx": "ipgeo.cli.deploy:nginx",
    "healthcheck": "ipgeo.cli.deploy:healthcheck",
    "dashboard": "ipgeo.cli.dashboard:dashboard",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name, eager ones included."""
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command called ``cmd_name``, importing its module when needed."""
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module, _, attribute = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ipgeo")
def main() -> None:
    """ipgeo: self-hosted IP geolocation."""
