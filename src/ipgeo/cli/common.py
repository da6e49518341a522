"""Start-up helpers shared by the commands: settings and the lookup service."""

from __future__ import annotations

import time

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


def stale_data_warning(settings: Settings, service: GeoService) -> str | None:
    """A warning naming the refresh command when the City data is older than allowed."""
    info = service.city.info
    age_days = (time.time() - info.build_epoch) / 86400
    if not settings.db_max_age_days or age_days <= settings.db_max_age_days:
        return None
    return (
        f"the location data in service ({info.database_type}, built {info.build_date[:10]}, "
        f"{info.path}) is {age_days:.0f} days old, older than IPGEO_DB_MAX_AGE_DAYS="
        f"{settings.db_max_age_days}; refresh it with: ipgeo db update --source dbip-lite "
        "(no account needed; or `ipgeo db update` with a MaxMind account). A running "
        "service picks the new files up without a restart."
    )
