"""``ipgeo nginx`` and ``ipgeo healthcheck``: helpers for the container images."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ipgeo.cli.common import load_settings
from ipgeo.cli.tls import tls_files, tls_options
from ipgeo.nginxconf import nginx_include
from ipgeo.up.healthcheck import http_status, uwsgi_status
from ipgeo.up.nginx import NginxSite, find_nginx, nginx_argv, system_resolver


@click.command()
@click.option("--listen", "listens", multiple=True, default=["8080"], show_default=True)
@click.option(
    "--upstream",
    "upstreams",
    multiple=True,
    required=True,
    help="App server: host:port or unix:/path (repeat for several replicas).",
)
@click.option("--protocol", type=click.Choice(["uwsgi", "http"]), default="uwsgi")
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("/run/ipgeo/nginx"),
    show_default=True,
)
@click.option(
    "--resolver",
    default=None,
    help="DNS server for resolving the upstream at request time ('auto': /etc/resolv.conf).",
)
@click.option("--render-only", is_flag=True, help="Write the configuration and print its path.")
@tls_options
def nginx(
    listens: tuple[str, ...],
    upstreams: tuple[str, ...],
    protocol: str,
    run_dir: Path,
    resolver: str | None,
    render_only: bool,
    tls_cert: Path | None,
    tls_key: Path | None,
    hsts: bool,
) -> None:
    """Render nginx's configuration from the settings and run nginx in the foreground.

    With --tls-cert and --tls-key (or IPGEO_TLS_CERT and IPGEO_TLS_KEY) every listen serves
    HTTPS with HTTP/2.
    """
    settings = load_settings()
    if resolver == "auto":
        resolver = system_resolver()
    conf = NginxSite(
        run_dir=run_dir,
        listens=listens,
        upstream_servers=upstreams,
        protocol=protocol,
        server_names=settings.server_names,
        trusted_proxies=tuple(str(net) for net in settings.trusted_proxies),
        client_max_body_size=settings.max_upload,
        allowlist=nginx_include(settings.allowed, ()),
        resolver=resolver,
        tls=tls_files(tls_cert, tls_key, hsts),
    ).render()
    if render_only:
        click.echo(conf)
        return
    binary = find_nginx()
    if binary is None:
        raise click.ClickException("nginx is not installed")
    argv = nginx_argv(binary, conf)
    os.execv(argv[0], argv)  # noqa: S606 - replace this process: signals go straight to nginx


@click.command()
@click.option("--url", default=None, help="Check GET URL over HTTP instead of uwsgi.")
@click.option(
    "--uwsgi",
    "address",
    envvar="UWSGI_SOCKET",
    default="127.0.0.1:3031",
    show_default=True,
    help="uWSGI socket (host:port, :port or a unix path); default $UWSGI_SOCKET.",
)
@click.option(
    "--worker",
    "job_worker",
    is_flag=True,
    help="Check that an `ipgeo worker` of this host is registered in IPGEO_REDIS_URL.",
)
def healthcheck(url: str | None, address: str, job_worker: bool) -> None:
    """Exit 0 when GET /healthz answers 200 (for container HEALTHCHECKs).

    With IPGEO_TLS_CERT set (nginx serving HTTPS), an http:// --url is asked over HTTPS.
    """
    if job_worker:
        from ipgeo.up.healthcheck import worker_data_dir_problem, worker_registered_here

        settings = load_settings()
        if not settings.redis_url or not worker_registered_here(settings.redis_url):
            raise click.ClickException("unhealthy: no worker of this host is registered")
        problem = worker_data_dir_problem(settings.redis_url, settings.data_dir)
        if problem is not None:
            raise click.ClickException(f"unhealthy: {problem}")
        click.echo("healthy")
        return
    try:
        if url:
            if url.startswith("http://") and os.environ.get("IPGEO_TLS_CERT"):
                # the nginx container serves HTTPS on the same port once TLS is configured
                url = "https://" + url.removeprefix("http://")
            status = http_status(url)
        else:
            if address.startswith(":"):
                address = "127.0.0.1" + address
            status = uwsgi_status(address)
    except OSError as exc:
        raise click.ClickException(f"unhealthy: {exc}") from None
    if status != 200:
        raise click.ClickException(f"unhealthy: status {status}")
    click.echo("healthy")
