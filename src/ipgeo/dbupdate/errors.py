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


class CorruptDownload(UpdateError):
    """The download is truncated, fails its checksum or is not a readable database."""

    kind = "corrupt"


class WrongDatabaseType(UpdateError):
    """The download is a valid database, but not of the expected type."""

    kind = "wrong_type"


class LockBusy(UpdateError):
    """Another updater holds the lock file."""

    kind = "locked"
