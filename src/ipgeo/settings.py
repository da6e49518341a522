"""Typed, frozen settings built from ``IPGEO_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ipgeo import settings_parsers as p
from ipgeo.settings_parsers import IPNetwork, SettingsError, parse_networks, split_list

__all__ = ["IPNetwork", "Settings", "SettingsError", "parse_networks", "split_list"]

# Databases are a few hundred MB at most today; this leaves room and still bounds the disk.
DB_MAX_DOWNLOAD_DEFAULT = 2 * 1024**3


def _default_data_dir() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "ipgeo"


def _env(name: str, parser: Callable[[str, str], Any], doc: str, example: str = "") -> Any:
    """Declare a settings field read from the environment variable ``name``."""
    return {"env": name, "parser": parser, "doc": doc, "example": example}


@dataclass(frozen=True, slots=True)
class Settings:
    """All configuration of the service, read once at start-up."""

    city_db: Path | None = field(
        default=None,
        metadata=_env(
            "IPGEO_CITY_DB",
            p.parse_optional_path,
            "Path of a MaxMind-format City or Country database (GeoLite2, DB-IP, IPinfo). "
            "Default: the newest City or Country database installed in the database "
            "directory (`IPGEO_DB_DIR`), else the GeoLite2 City database bundled with the "
            "package.",
            "/data/GeoLite2-City.mmdb",
        ),
    )
    asn_db: Path | None = field(
        default=None,
        metadata=_env(
            "IPGEO_ASN_DB",
            p.parse_optional_path,
            "Path of an optional ASN (or ISP) database; adds `asn` and `asn_org`. Default: "
            "the newest ASN database installed in the database directory, if any.",
            "/data/GeoLite2-ASN.mmdb",
        ),
    )
    data_dir: Path = field(
        default_factory=_default_data_dir,
        metadata=_env(
            "IPGEO_DATA_DIR",
            p.parse_path,
            "Writable directory for runtime state (uploads, job results, embedded Redis).",
            "/var/lib/ipgeo",
        ),
    )
    trusted_proxies: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_TRUSTED_PROXIES",
            p.parse_networks,
            "Proxies (IPs/CIDRs) whose `X-Forwarded-For`/`X-Real-IP` headers are believed. "
            "Default: none, so the direct peer is the client.",
            "127.0.0.1;10.0.0.0/8",
        ),
    )
    languages: tuple[str, ...] = field(
        default=("en",),
        metadata=_env(
            "IPGEO_LANGUAGES",
            p.parse_languages,
            "Preferred languages for place names, in order; English is always the last fallback.",
            "de,en",
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=("*",),
        metadata=_env(
            "IPGEO_CORS_ORIGINS",
            p.parse_origins,
            "Origins allowed to call the GET API from browsers (`*` for any, empty for none).",
            "https://example.com",
        ),
    )
    batch_limit: int = field(
        default=1000,
        metadata=_env(
            "IPGEO_BATCH_LIMIT",
            p.parse_int(1, 100_000),
            "Most queries accepted by one `POST /api/v1/batch` request.",
            "1000",
        ),
    )
    batch_names_deadline: float = field(
        default=5.0,
        metadata=_env(
            "IPGEO_BATCH_NAMES_DEADLINE",
            p.parse_float(0.1, 120.0),
            "Seconds one `POST /api/v1/batch` may spend resolving its domain names (resolved "
            "concurrently); names still unresolved then get an `unresolvable` error each.",
            "5",
        ),
    )
    record_cache_size: int = field(
        default=65_536,
        metadata=_env(
            "IPGEO_RECORD_CACHE_SIZE",
            p.parse_int(1, 10_000_000),
            "Decoded database records kept per worker process and database generation (the "
            "one record cache every lookup shares; about 1 kB each; dropped on a reload).",
            "65536",
        ),
    )
    dns_timeout: float = field(
        default=2.0,
        metadata=_env(
            "IPGEO_DNS_TIMEOUT",
            p.parse_float(0.1, 30.0),
            "Total seconds allowed to resolve a domain name (A and AAAA together).",
            "2",
        ),
    )
    dns_servers: tuple[tuple[str, int], ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_DNS_SERVERS",
            p.parse_dns_servers,
            "Name servers (`ip` or `ip:port`) used for domain lookups. Default: the system's.",
            "1.1.1.1;9.9.9.9",
        ),
    )
    reverse_dns: bool = field(
        default=False,
        metadata=_env(
            "IPGEO_REVERSE_DNS",
            p.parse_bool,
            "Fill `hostname` for IP queries with a reverse (PTR) lookup.",
            "false",
        ),
    )
    map_tiles: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAP_TILES",
            p.parse_tile_url,
            "Online map tiles for the web pages: a URL template with `{z}`, `{x}`, `{y}`. "
            "Default: none, so maps draw the bundled world outline and need no network.",
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        ),
    )
    map_attribution: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAP_ATTRIBUTION",
            p.parse_text,
            "Attribution text shown on maps that use `IPGEO_MAP_TILES` (HTML is escaped).",
            "© OpenStreetMap contributors",
        ),
    )
    database_url: str | None = field(
        default=None,
        metadata=_env(
            "IPGEO_DATABASE_URL",
            p.parse_database_url,
            "PostgreSQL/PostGIS database for time-zone fill-in (load it with "
            "`ipgeo db load-timezones`). Default: none, the embedded `timezonefinder` polygons.",
            "postgresql://ipgeo:secret@db:5432/ipgeo",
        ),
    )
    database_timeout: float = field(
        default=0.5,
        metadata=_env(
            "IPGEO_DATABASE_TIMEOUT",
            p.parse_float(0.01, 60.0),
            "Seconds a PostGIS time-zone query may take (statement timeout) before the lookup "
            "falls back to the embedded polygons.",
            "0.5",
        ),
    )
    tz_nearest_km: float = field(
        default=30.0,
        metadata=_env(
            "IPGEO_TZ_NEAREST_KM",
            p.parse_float(0.0, 500.0),
            "With PostGIS: a point outside every land time-zone polygon (just off the coast) "
            "takes the zone of the nearest polygon within this distance; `0` disables it.",
            "30",
        ),
    )
    log_format: str = field(
        default="text",
        metadata=_env(
            "IPGEO_LOG_FORMAT",
            p.parse_choice("text", "json"),
            "Log format: `text` for people, `json` for log collectors.",
            "json",
        ),
    )
    access_log: bool = field(
        default=True,
        metadata=_env(
            "IPGEO_ACCESS_LOG",
            p.parse_bool,
            "Write one access-log line per request (logger `ipgeo.access`). Behind nginx, "
            "which logs every request itself, `false` avoids the duplicate line (about a third "
            "of the app's CPU time per lookup). Default: `true`; `deploy/uwsgi.ini` makes it "
            "`false`.",
            "false",
        ),
    )

    redis_url: str | None = field(
        default=None,
        metadata=_env(
            "IPGEO_REDIS_URL",
            p.parse_redis_url,
            "Redis for the visit counter, rate limits and background jobs (`redis://`, `rediss://` "
            "or `unix://`). "
            "Unset: `ipgeo serve` and `make run` start an embedded Redis with its files in "
            "`IPGEO_DATA_DIR`; other servers (uWSGI) run without visit counts and count rate "
            "limits per process.",
            "redis://127.0.0.1:6379/0",
        ),
    )
    visit_ttl: int = field(
        default=0,
        metadata=_env(
            "IPGEO_VISIT_TTL",
            p.parse_int(0, 10 * 365 * 86400),
            "Seconds without a visit after which an IP's visit counter is forgotten (0: never).",
            "2592000",
        ),
    )
    rate_limit: str = field(
        default="",
        metadata=_env(
            "IPGEO_RATE_LIMIT",
            p.parse_rate_limit,
            "Requests each client IP may make, e.g. `60/minute;2000/hour` (a batch counts one "
            "per query). Default: no limit.",
            "60/minute;2000/hour",
        ),
    )
    client_ipv6_prefix: int = field(
        default=64,
        metadata=_env(
            "IPGEO_CLIENT_IPV6_PREFIX",
            p.parse_int(1, 128),
            "Rate limits and the visit counter count an IPv6 client by its network of this "
            "prefix length (one subscriber usually holds a whole /64 and picks addresses in it "
            "at will); IPv4 clients count by address.",
            "64",
        ),
    )
    rate_limit_exempt: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_RATE_LIMIT_EXEMPT",
            p.parse_networks,
            "Client networks (IPs/CIDRs) that are never rate limited.",
            "10.0.0.0/8;fd00::/8",
        ),
    )
    allowed: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_ALLOWED",
            p.parse_networks,
            "Only these client IPs/CIDRs (IPv4 or IPv6, `;` or `,` separated) may use the "
            "service; others get 403. Default: everyone. `ipgeo nginx-conf` writes the same "
            "list for nginx.",
            "172.18.0.2;172.18.0.0/16;",
        ),
    )
    db_dir: Path | None = field(
        default=None,
        metadata=_env(
            "IPGEO_DB_DIR",
            p.parse_optional_path,
            "Directory `ipgeo db update` writes databases to, and where the service looks "
            "for them when `IPGEO_CITY_DB`/`IPGEO_ASN_DB` are unset. Default: the directory "
            "of `IPGEO_CITY_DB`, else `IPGEO_DATA_DIR/databases`.",
            "/data",
        ),
    )
    maxmind_account_id: int | None = field(
        default=None,
        metadata=_env(
            "IPGEO_MAXMIND_ACCOUNT_ID",
            p.parse_optional_int(1, 2**31 - 1),
            "MaxMind account ID for `ipgeo db update` (overrides `AccountID` of GeoIP.conf).",
            "123456",
        ),
    )
    maxmind_license_key: str = field(
        default="",
        repr=False,
        metadata=_env(
            "IPGEO_MAXMIND_LICENSE_KEY",
            p.parse_secret,
            "MaxMind license key for `ipgeo db update` (overrides `LicenseKey`).",
            "xxxxxx_xxxxxxxxxxxx_mmk",
        ),
    )
    maxmind_editions: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_MAXMIND_EDITIONS",
            p.parse_editions,
            "Edition IDs `ipgeo db update` fetches (overrides `EditionIDs`). Default: "
            "GeoLite2-City GeoLite2-ASN.",
            "GeoLite2-City GeoLite2-ASN",
        ),
    )
    maxmind_host: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAXMIND_HOST",
            p.parse_host,
            "Update server (host name or URL) speaking geoipupdate's protocol (overrides "
            "`Host`). Default: updates.maxmind.com.",
            "updates.maxmind.com",
        ),
    )
    update_urls: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_UPDATE_URLS",
            p.parse_urls,
            "Space-separated plain URLs of `.mmdb`, `.mmdb.gz` or `.tar.gz` files that "
            "`ipgeo db update` fetches (DB-IP lite, IPinfo lite); `NAME=URL` sets the file "
            "name, a `#sha256=HEX` fragment a checksum.",
            "dbip-city-lite.mmdb=https://example.com/dbip-city-lite.mmdb.gz",
        ),
    )
    dbip_url: str = field(
        default="https://download.db-ip.com/free/",
        metadata=_env(
            "IPGEO_DBIP_URL",
            p.parse_directory_url,
            "Where `ipgeo db update --source dbip-lite` fetches DB-IP's monthly "
            "`dbip-city-lite-YYYY-MM.mmdb.gz` and `dbip-asn-lite-YYYY-MM.mmdb.gz`.",
            "https://download.db-ip.com/free/",
        ),
    )
    db_max_download: int = field(
        default=DB_MAX_DOWNLOAD_DEFAULT,
        metadata=_env(
            "IPGEO_DB_MAX_DOWNLOAD",
            p.parse_size(1024, 1024**4),
            "Largest database `ipgeo db update` accepts (bytes, or with K, M, G), both as "
            "downloaded and as unpacked from `.gz`/`.tar.gz`; a bigger one fails (the "
            "installed file stays). Default: 2G.",
            "2G",
        ),
    )
    db_reload_interval: float = field(
        default=5.0,
        metadata=_env(
            "IPGEO_DB_RELOAD_INTERVAL",
            p.parse_float(0.0, 3600.0),
            "Seconds between checks whether a database file was replaced (then it is "
            "reloaded without dropping requests; SIGHUP checks at once). 0 turns checks off.",
            "5",
        ),
    )
    db_max_age_days: int = field(
        default=45,
        metadata=_env(
            "IPGEO_DB_MAX_AGE_DAYS",
            p.parse_int(0, 100_000),
            "When the served City database's build is older than this many days, `/readyz` "
            "reports it as degraded and `ipgeo serve`/`ipgeo up` warn at start (0: never). "
            "Default: 45.",
            "45",
        ),
    )
    metrics_allowed: tuple[IPNetwork, ...] = field(
        default=(
            ipaddress.ip_network("127.0.0.0/8"),
            ipaddress.ip_network("::1/128"),
        ),
        metadata=_env(
            "IPGEO_METRICS_ALLOWED",
            p.parse_networks,
            "Client networks allowed to read `/metrics` (others get 403; empty: nobody) and the "
            "details of `/readyz` (paths, errors; others see each check's status). "
            "Default: loopback only.",
            "127.0.0.1;10.0.0.0/8",
        ),
    )
    max_upload: int = field(
        default=1024**3,
        metadata=_env(
            "IPGEO_MAX_UPLOAD",
            p.parse_size(1024, 1024**4),
            "Largest file accepted by `POST /api/v1/jobs` (bytes, or with K, M, G); bigger "
            "uploads get 413. Uploads are streamed to `IPGEO_DATA_DIR/jobs`.",
            "1G",
        ),
    )
    job_timeout: int = field(
        default=3600,
        metadata=_env(
            "IPGEO_JOB_TIMEOUT",
            p.parse_int(10, 7 * 86400),
            "Seconds a bulk job may run before the worker stops it (it then ends `failed`).",
            "3600",
        ),
    )
    job_result_ttl: int = field(
        default=86400,
        metadata=_env(
            "IPGEO_JOB_RESULT_TTL",
            p.parse_int(60, 365 * 86400),
            "Seconds a finished or canceled job and its result files are kept.",
            "86400",
        ),
    )
    job_failure_ttl: int = field(
        default=7 * 86400,
        metadata=_env(
            "IPGEO_JOB_FAILURE_TTL",
            p.parse_int(60, 365 * 86400),
            "Seconds a failed job (its error and its input file) is kept.",
            "604800",
        ),
    )
    job_max_rows: int = field(
        default=10_000_000,
        metadata=_env(
            "IPGEO_JOB_MAX_ROWS",
            p.parse_int(1, 10**12),
            "Most rows a bulk job may write; a job whose result would be longer (say, one "
            "line `0.0.0.0/0` has a row per database network) ends `failed` with the error "
            "`too_large` and its partial result is removed.",
            "10000000",
        ),
    )
    job_max_input: int = field(
        default=20 * 1024**3,
        metadata=_env(
            "IPGEO_JOB_MAX_INPUT",
            p.parse_size(1024, 1024**5),
            "Most bytes of a job's input once decompressed (bytes, or with K, M, G, T): a "
            "small gzip upload can hold a thousand times its size. Past it the job ends "
            "`failed` with the error `too_large`. Default: 20G (20 times the default "
            "`IPGEO_MAX_UPLOAD`).",
            "20G",
        ),
    )
    job_retries: int = field(
        default=0,
        metadata=_env(
            "IPGEO_JOB_RETRIES",
            p.parse_int(0, 10),
            "How often a job whose worker died (or that failed unexpectedly) is run again. Bad "
            "input is never retried.",
            "1",
        ),
    )
    job_chunk_size: int = field(
        default=64 * 1024**2,
        metadata=_env(
            "IPGEO_JOB_CHUNK_SIZE",
            p.parse_size(64 * 1024, 1024**4),
            "A job's input is cut at line boundaries into chunks of about this many bytes of "
            "uncompressed input (bytes, or with K, M, G); each chunk is a job on the `bulk` "
            "queue that any worker may take, and a merge job puts the results together in "
            "input order. A smaller input stays one chunk.",
            "64M",
        ),
    )
    job_progress_interval: float = field(
        default=1.0,
        metadata=_env(
            "IPGEO_JOB_PROGRESS_INTERVAL",
            p.parse_float(0.05, 60.0),
            "Seconds between two progress reports of a running job (saved in Redis).",
            "1",
        ),
    )
    dashboard_user: str = field(
        default="",
        metadata=_env(
            "IPGEO_DASHBOARD_USER",
            p.parse_text,
            "User name for rq-dashboard at `/admin/rq` (HTTP basic auth). With no user or no "
            "password the dashboard is not mounted.",
            "admin",
        ),
    )
    dashboard_password: str = field(
        default="",
        metadata=_env(
            "IPGEO_DASHBOARD_PASSWORD",
            p.parse_text,
            "Password for rq-dashboard at `/admin/rq`.",
            "a-long-random-secret",
        ),
    )
    dashboard_auth_limit: str = field(
        default="5/minute",
        metadata=_env(
            "IPGEO_DASHBOARD_AUTH_LIMIT",
            p.parse_rate_limit,
            "Failed dashboard logins each client IP may make before it gets 429 (counted in "
            "Redis); a correct password is never counted or slowed. Empty: no limit.",
            "5/minute;20/hour",
        ),
    )
    server_names: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_SERVER_NAMES",
            p.parse_server_names,
            "Host names nginx answers for (`ipgeo up`, the containers); requests for any other "
            "host are dropped (444). Default: any host name.",
            "geo.example.com;localhost",
        ),
    )
    webservice_accounts: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_WEBSERVICE_ACCOUNTS",
            p.parse_webservice_accounts,
            "`account_id:license_key` pairs (`;`-separated) accepted by the MaxMind-compatible "
            "web service at `/geoip/v2.1/` (HTTP basic auth). Default: any credentials.",
            "123456:a-long-license-key;654321:another-key",
        ),
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
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in fields(cls):
            name = spec.metadata["env"]
            if name in env:
                values[spec.name] = spec.metadata["parser"](env[name], name)
        return cls(**values)

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """Return ``(variable, example, description)`` for every setting."""
        return [
            (spec.metadata["env"], spec.metadata["example"], spec.metadata["doc"])
            for spec in fields(cls)
        ]
