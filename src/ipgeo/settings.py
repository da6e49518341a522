"""Typed, frozen settings built from ``IPGEO_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ipgeo import settings_parsers as p
from ipgeo.settings_groups import (
    DashboardSettings,
    DnsSettings,
    MapSettings,
    TimezoneSettings,
    UpdateSettings,
    group,
    read_env,
    setting,
    variables,
)
from ipgeo.settings_parsers import IPNetwork, SettingsError, parse_networks, split_list

__all__ = ["IPNetwork", "Settings", "SettingsError", "parse_networks", "split_list"]


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "ipgeo"


@dataclass(frozen=True, slots=True)
class Settings:
    """All configuration of the service, read once at start-up."""

    city_db: Path | None = setting(
        None,
        "IPGEO_CITY_DB",
        p.parse_optional_path,
        "Path of a MaxMind-format City or Country database (GeoLite2, DB-IP, IPinfo). "
        "Default: the newest City or Country database installed in the database "
        "directory (`IPGEO_DB_DIR`), else the GeoLite2 City database bundled with the "
        "package.",
        "/data/GeoLite2-City.mmdb",
    )
    asn_db: Path | None = setting(
        None,
        "IPGEO_ASN_DB",
        p.parse_optional_path,
        "Path of an optional ASN (or ISP) database; adds `asn` and `asn_org`. Default: "
        "the newest ASN database installed in the database directory, if any.",
        "/data/GeoLite2-ASN.mmdb",
    )
    data_dir: Path = setting(
        None,
        "IPGEO_DATA_DIR",
        p.parse_path,
        "Writable directory for runtime state (uploads, job results, embedded Redis).",
        "/var/lib/ipgeo",
        factory=_default_data_dir,
    )
    trusted_proxies: tuple[IPNetwork, ...] = setting(
        (),
        "IPGEO_TRUSTED_PROXIES",
        p.parse_networks,
        "Proxies (IPs/CIDRs) whose `X-Forwarded-For`/`X-Real-IP` headers are believed. "
        "Default: none, so the direct peer is the client.",
        "127.0.0.1;10.0.0.0/8",
    )
    languages: tuple[str, ...] = setting(
        ("en",),
        "IPGEO_LANGUAGES",
        p.parse_languages,
        "Preferred languages for place names, in order; English is always the last fallback.",
        "de,en",
    )
    cors_origins: tuple[str, ...] = setting(
        ("*",),
        "IPGEO_CORS_ORIGINS",
        p.parse_origins,
        "Origins allowed to call the GET API from browsers (`*` for any, empty for none).",
        "https://example.com",
    )
    batch_limit: int = setting(
        1000,
        "IPGEO_BATCH_LIMIT",
        p.parse_int(1, 100_000),
        "Most queries accepted by one `POST /api/v1/batch` request.",
        "1000",
    )
    batch_names_deadline: float = setting(
        5.0,
        "IPGEO_BATCH_NAMES_DEADLINE",
        p.parse_float(0.1, 120.0),
        "Seconds one `POST /api/v1/batch` may spend resolving its domain names (resolved "
        "concurrently); names still unresolved then get an `unresolvable` error each.",
        "5",
    )
    record_cache_size: int = setting(
        131_072,
        "IPGEO_RECORD_CACHE_SIZE",
        p.parse_int(1, 10_000_000),
        "Decoded database records kept per worker process and database generation (the "
        "one record cache every lookup shares; about 1.5 kB each with their batch answer, "
        "~190 MB when full; the least recently used go first; dropped on a reload).",
        "131072",
    )
    dns: DnsSettings = group(DnsSettings)
    maps: MapSettings = group(MapSettings)
    timezones: TimezoneSettings = group(TimezoneSettings)
    log_format: str = setting(
        "text",
        "IPGEO_LOG_FORMAT",
        p.parse_choice("text", "json"),
        "Log format: `text` for people, `json` for log collectors.",
        "json",
    )
    access_log: bool = setting(
        True,
        "IPGEO_ACCESS_LOG",
        p.parse_bool,
        "Write one access-log line per request (logger `ipgeo.access`). Behind nginx, "
        "which logs every request itself, `false` avoids the duplicate line (about a third "
        "of the app's CPU time per lookup). Default: `true`; `deploy/uwsgi.ini` makes it "
        "`false`.",
        "false",
    )

    redis_url: str | None = setting(
        None,
        "IPGEO_REDIS_URL",
        p.parse_redis_url,
        "Redis for the visit counter, rate limits and background jobs (`redis://`, `rediss://` "
        "or `unix://`). "
        "Unset: `ipgeo serve` and `make run` start an embedded Redis with its files in "
        "`IPGEO_DATA_DIR`; other servers (uWSGI) run without visit counts and count rate "
        "limits per process.",
        "redis://127.0.0.1:6379/0",
    )
    visit_ttl: int = setting(
        0,
        "IPGEO_VISIT_TTL",
        p.parse_int(0, 10 * 365 * 86400),
        "Seconds without a visit after which an IP's visit counter is forgotten (0: never).",
        "2592000",
    )
    rate_limit: str = setting(
        "",
        "IPGEO_RATE_LIMIT",
        p.parse_rate_limit,
        "Requests each client IP may make, e.g. `60/minute;2000/hour` (a batch counts one "
        "per query). Default: no limit.",
        "60/minute;2000/hour",
    )
    client_ipv6_prefix: int = setting(
        64,
        "IPGEO_CLIENT_IPV6_PREFIX",
        p.parse_int(1, 128),
        "Rate limits and the visit counter count an IPv6 client by its network of this "
        "prefix length (one subscriber usually holds a whole /64 and picks addresses in it "
        "at will); IPv4 clients count by address.",
        "64",
    )
    rate_limit_exempt: tuple[IPNetwork, ...] = setting(
        (),
        "IPGEO_RATE_LIMIT_EXEMPT",
        p.parse_networks,
        "Client networks (IPs/CIDRs) that are never rate limited.",
        "10.0.0.0/8;fd00::/8",
    )
    allowed: tuple[IPNetwork, ...] = setting(
        (),
        "IPGEO_ALLOWED",
        p.parse_networks,
        "Only these client IPs/CIDRs (IPv4 or IPv6, `;` or `,` separated) may use the "
        "service; others get 403. Default: everyone. `ipgeo nginx-conf` writes the same "
        "list for nginx.",
        "172.18.0.2;172.18.0.0/16;",
    )
    db_dir: Path | None = setting(
        None,
        "IPGEO_DB_DIR",
        p.parse_optional_path,
        "Directory `ipgeo db update` writes databases to, and where the service looks "
        "for them when `IPGEO_CITY_DB`/`IPGEO_ASN_DB` are unset. Default: the directory "
        "of `IPGEO_CITY_DB`, else `IPGEO_DATA_DIR/databases`.",
        "/data",
    )
    updates: UpdateSettings = group(UpdateSettings)
    db_reload_interval: float = setting(
        5.0,
        "IPGEO_DB_RELOAD_INTERVAL",
        p.parse_float(0.0, 3600.0),
        "Seconds between checks whether a database file was replaced (then it is "
        "reloaded without dropping requests; SIGHUP checks at once). 0 turns checks off.",
        "5",
    )
    db_max_age_days: int = setting(
        45,
        "IPGEO_DB_MAX_AGE_DAYS",
        p.parse_int(0, 100_000),
        "When the served City database's build is older than this many days, `/readyz` "
        "reports it as degraded and `ipgeo serve`/`ipgeo up` warn at start (0: never). "
        "Default: 45.",
        "45",
    )
    metrics_allowed: tuple[IPNetwork, ...] = setting(
        (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "IPGEO_METRICS_ALLOWED",
        p.parse_networks,
        "Client networks allowed to read `/metrics` (others get 403; empty: nobody) and the "
        "details of `/readyz` (paths, errors; others see each check's status). "
        "Default: loopback only.",
        "127.0.0.1;10.0.0.0/8",
    )
    max_upload: int = setting(
        1024**3,
        "IPGEO_MAX_UPLOAD",
        p.parse_size(1024, 1024**4),
        "Largest file accepted by `POST /api/v1/jobs` (bytes, or with K, M, G); bigger "
        "uploads get 413. Uploads are streamed to `IPGEO_DATA_DIR/jobs`.",
        "1G",
    )
    job_timeout: int = setting(
        3600,
        "IPGEO_JOB_TIMEOUT",
        p.parse_int(10, 7 * 86400),
        "Seconds a bulk job may run before the worker stops it (it then ends `failed`).",
        "3600",
    )
    job_result_ttl: int = setting(
        86400,
        "IPGEO_JOB_RESULT_TTL",
        p.parse_int(60, 365 * 86400),
        "Seconds a finished or canceled job and its result files are kept.",
        "86400",
    )
    job_failure_ttl: int = setting(
        7 * 86400,
        "IPGEO_JOB_FAILURE_TTL",
        p.parse_int(60, 365 * 86400),
        "Seconds a failed job (its error and its input file) is kept.",
        "604800",
    )
    job_max_rows: int = setting(
        10_000_000,
        "IPGEO_JOB_MAX_ROWS",
        p.parse_int(1, 10**12),
        "Most rows a bulk job may write; a job whose result would be longer (say, one "
        "line `0.0.0.0/0` has a row per database network) ends `failed` with the error "
        "`too_large` and its partial result is removed.",
        "10000000",
    )
    job_max_input: int = setting(
        20 * 1024**3,
        "IPGEO_JOB_MAX_INPUT",
        p.parse_size(1024, 1024**5),
        "Most bytes of a job's input once decompressed (bytes, or with K, M, G, T): a "
        "small gzip upload can hold a thousand times its size. Past it the job ends "
        "`failed` with the error `too_large`. Default: 20G (20 times the default "
        "`IPGEO_MAX_UPLOAD`).",
        "20G",
    )
    job_retries: int = setting(
        1,
        "IPGEO_JOB_RETRIES",
        p.parse_int(0, 10),
        "How often a chunk of a job whose worker died (or that failed unexpectedly) is run "
        "again, on any worker; then the job fails naming the chunk. Bad input is never "
        "retried. Default: 1.",
        "1",
    )
    job_chunk_size: int = setting(
        64 * 1024**2,
        "IPGEO_JOB_CHUNK_SIZE",
        p.parse_size(64 * 1024, 1024**4),
        "A job's input is cut at line boundaries into chunks of about this many bytes of "
        "uncompressed input (bytes, or with K, M, G); each chunk is a job on the `bulk` "
        "queue that any worker may take, and a merge job puts the results together in "
        "input order. A smaller input stays one chunk.",
        "64M",
    )
    job_progress_interval: float = setting(
        1.0,
        "IPGEO_JOB_PROGRESS_INTERVAL",
        p.parse_float(0.05, 60.0),
        "Seconds between two progress reports of a running job (saved in Redis).",
        "1",
    )
    dashboard: DashboardSettings = group(DashboardSettings)
    server_names: tuple[str, ...] = setting(
        (),
        "IPGEO_SERVER_NAMES",
        p.parse_server_names,
        "Host names nginx answers for (`ipgeo up`, the containers); requests for any other "
        "host are dropped (444). Default: any host name.",
        "geo.example.com;localhost",
    )
    webservice_accounts: tuple[tuple[str, str], ...] = setting(
        (),
        "IPGEO_WEBSERVICE_ACCOUNTS",
        p.parse_webservice_accounts,
        "`account_id:license_key` pairs (`;`-separated) accepted by the MaxMind-compatible "
        "web service at `/geoip/v2.1/` (HTTP basic auth). Default: any credentials.",
        "123456:a-long-license-key;654321:another-key",
        hidden=True,
    )

    @property
    def database_dir(self) -> Path:
        """The database directory: ``IPGEO_DB_DIR``, else next to ``IPGEO_CITY_DB``, else
        ``IPGEO_DATA_DIR/databases``."""
        if self.db_dir is not None:
            return self.db_dir
        if self.city_db is not None:
            return self.city_db.parent
        return self.data_dir / "databases"

    @property
    def batch_body_limit(self) -> int:
        """The most bytes a ``POST /api/v1/batch`` body may have (from ``IPGEO_BATCH_LIMIT``)."""
        return self.batch_limit * 512 + 4096

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``environ`` (default ``os.environ``); raise ``SettingsError``."""
        return read_env(cls, os.environ if environ is None else environ)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """Return ``(variable, example, description)`` for every setting."""
        return [
            (spec.metadata["env"], spec.metadata["example"], spec.metadata["doc"])
            for spec in variables(cls)
        ]
