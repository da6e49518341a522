"""The HTTPS options shared by ``ipgeo up`` and ``ipgeo nginx``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

from ipgeo.up.nginx import TlsFiles

F = TypeVar("F", bound=Callable[..., object])
_PEM = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def tls_options(command: F) -> F:
    """Add ``--tls-cert``, ``--tls-key`` and ``--hsts`` (also from ``IPGEO_TLS_*``)."""
    command = click.option(
        "--hsts",
        is_flag=True,
        envvar="IPGEO_TLS_HSTS",
        help="With HTTPS, send Strict-Transport-Security (two years).",
    )(command)
    command = click.option(
        "--tls-key",
        type=_PEM,
        envvar="IPGEO_TLS_KEY",
        default=None,
        help="Private key (PEM) of --tls-cert. Default: $IPGEO_TLS_KEY.",
    )(command)
    return click.option(
        "--tls-cert",
        type=_PEM,
        envvar="IPGEO_TLS_CERT",
        default=None,
        help="Certificate chain (PEM): serve HTTPS with HTTP/2 on the port. "
        "Default: $IPGEO_TLS_CERT.",
    )(command)


def tls_files(cert: Path | None, key: Path | None, hsts: bool) -> TlsFiles | None:
    """The TLS files asked for, ``None`` for plain HTTP; both or neither must be given."""
    if cert is None and key is None:
        if hsts:
            raise click.UsageError("--hsts needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise click.UsageError("--tls-cert and --tls-key go together")
    return TlsFiles(cert.absolute(), key.absolute(), hsts)
