"""Start-up helpers shared by the commands: settings and the lookup service."""

from __future__ import annotations

import click

from ipgeo.geo import DatabaseError, GeoService
from ipgeo.settings import Settings, SettingsError


def load_settings() -> Settings:
    """Read settings from the environment, or exit with a message naming the bad variable."""
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


def load_service(settings: Settings) -> GeoService:
    """Open the databases, or exit with a clear message."""
    try:
        return GeoService.from_settings(settings)
    except DatabaseError as exc:
        raise click.ClickException(f"cannot open database: {exc}") from None


def setup_logging(settings: Settings) -> None:
    """Configure process-wide logging (``IPGEO_LOG_FORMAT``: text or JSON lines)."""
    from ipgeo.logs import setup_logging as setup

    setup(settings.log_format)
