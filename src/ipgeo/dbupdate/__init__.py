"""Database updates: geoipupdate's protocol and plain URLs, installed atomically. No Flask."""

from ipgeo.dbupdate.config import UpdateConfig, UrlSource, build_config, parse_geoip_conf
from ipgeo.dbupdate.errors import (
    AuthenticationFailed,
    ConfigError,
    CorruptDownload,
    DownloadTooLarge,
    LockBusy,
    NetworkError,
    UpdateError,
    WrongDatabaseType,
)
from ipgeo.dbupdate.steps import UpdateResult
from ipgeo.dbupdate.updater import run_update

__all__ = [
    "AuthenticationFailed",
    "ConfigError",
    "CorruptDownload",
    "DownloadTooLarge",
    "LockBusy",
    "NetworkError",
    "UpdateConfig",
    "UpdateError",
    "UpdateResult",
    "UrlSource",
    "WrongDatabaseType",
    "build_config",
    "parse_geoip_conf",
    "run_update",
]
