"""Errors of ``ipgeo db update``; each one leaves the installed database untouched."""

from __future__ import annotations


class UpdateError(RuntimeError):
    """An update failed; the previous database stays in service."""

    kind = "error"


class ConfigError(UpdateError):
    """The update configuration (GeoIP.conf, settings or options) is invalid."""

    kind = "config"


class AuthenticationFailed(UpdateError):
    """The server refused the account ID / license key (HTTP 401 or 403)."""

    kind = "auth"


class NetworkError(UpdateError):
    """The server could not be reached, or answered with an unexpected status."""

    kind = "network"


class NotPublished(NetworkError):
    """The server has no such file (HTTP 404); reported as a network error."""


class CorruptDownload(UpdateError):
    """The download is truncated, fails its checksum or is not a readable database."""

    kind = "corrupt"


class DownloadTooLarge(UpdateError):
    """The download, or the database unpacked from it, is bigger than ``IPGEO_DB_MAX_DOWNLOAD``."""

    kind = "too_large"


class WrongDatabaseType(UpdateError):
    """The download is a valid database, but not of the expected type."""

    kind = "wrong_type"


class LockBusy(UpdateError):
    """Another updater holds the lock file."""

    kind = "locked"


def too_large_hint(limit: int) -> str:
    """``IPGEO_DB_MAX_DOWNLOAD (2 GiB)``: the bound that was hit, for error messages."""
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if limit >= size and limit % size == 0:
            return f"IPGEO_DB_MAX_DOWNLOAD ({limit // size} {unit})"
    return f"IPGEO_DB_MAX_DOWNLOAD ({limit:,} bytes)"
