"""``ipgeo nginx-conf``: the nginx include matching the app's allowlist and trusted proxies."""

from __future__ import annotations

import click

from ipgeo.cli.common import load_settings
from ipgeo.nginxconf import nginx_include


@click.command("nginx-conf")
def nginx_conf() -> None:
    """Print an nginx include from IPGEO_ALLOWED and IPGEO_TRUSTED_PROXIES.

    \b
    ipgeo nginx-conf > /etc/nginx/snippets/ipgeo-access.conf
    # then, in the server block that proxies to ipgeo:
    include snippets/ipgeo-access.conf;
    """
    settings = load_settings()
    click.echo(nginx_include(settings.allowed, settings.trusted_proxies), nl=False)
