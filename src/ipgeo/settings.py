"""Typed, frozen settings built from ``IPGEO_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LANG_RE = re.compile(r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")


class SettingsError(ValueError):
    """A configuration value is missing or invalid."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def split_list(raw: str) -> list[str]:
    """Split a ``;`` or ``,`` separated list, dropping blanks (trailing separators allowed)."""
    return [item.strip() for item in re.split(r"[;,]", raw) if item.strip()]


def parse_networks(raw: str, variable: str) -> tuple[IPNetwork, ...]:
    """Parse a list of IPs and CIDRs; a bad entry raises ``SettingsError`` naming it."""
    networks: list[IPNetwork] = []
    for item in split_list(raw):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingsError(
                variable, f"{item!r} is not an IP address or CIDR network"
            ) from None
    return tuple(networks)


def _parse_path(raw: str, variable: str) -> Path:
    return Path(raw).expanduser()


def _parse_optional_path(raw: str, variable: str) -> Path | None:
    return Path(raw).expanduser() if raw.strip() else None


def _parse_int(minimum: int, maximum: int) -> Callable[[str, str], int]:
    def parse(raw: str, variable: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(variable, f"{raw!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise SettingsError(variable, f"{value} is outside {minimum}..{maximum}")
        return value

    return parse


def _parse_float(minimum: float, maximum: float) -> Callable[[str, str], float]:
    def parse(raw: str, variable: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(variable, f"{raw!r} is not a number") from None
        if not minimum <= value <= maximum:
            raise SettingsError(variable, f"{value} is outside {minimum}..{maximum}")
        return value

    return parse


def _parse_bool(raw: str, variable: str) -> bool:
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(variable, f"{raw!r} is not a boolean (use true or false)")


def _parse_languages(raw: str, variable: str) -> tuple[str, ...]:
    langs = split_list(raw)
    if not langs:
        raise SettingsError(variable, "at least one language is required (e.g. 'en')")
    for lang in langs:
        if not _LANG_RE.match(lang):
            raise SettingsError(variable, f"{lang!r} is not a language code like 'en' or 'pt-BR'")
    if "en" not in langs:
        langs.append("en")
    return tuple(langs)


def _parse_origins(raw: str, variable: str) -> tuple[str, ...]:
    origins = split_list(raw)
    for origin in origins:
        if origin != "*" and not re.match(r"^https?://[^/\s]+$", origin):
            raise SettingsError(
                variable, f"{origin!r} is not '*' or an origin like 'https://example.com'"
            )
    return tuple(origins)


def _split_host_port(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":") if rest else "53"
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, "53"
    port = int(port_text) if port_text.isdigit() else 0
    return host, port


def _parse_dns_servers(raw: str, variable: str) -> tuple[tuple[str, int], ...]:
    servers: list[tuple[str, int]] = []
    for item in split_list(raw):
        host, port = _split_host_port(item)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise SettingsError(variable, f"{item!r} is not an IP address[:port]") from None
        if not 0 < port < 65536:
            raise SettingsError(variable, f"{item!r} has an invalid port")
        servers.append((host, port))
    return tuple(servers)


def _parse_optional_int(minimum: int, maximum: int) -> Callable[[str, str], int | None]:
    parse_int = _parse_int(minimum, maximum)

    def parse(raw: str, variable: str) -> int | None:
        return parse_int(raw, variable) if raw.strip() else None

    return parse


def _parse_secret(raw: str, variable: str) -> str:
    return raw.strip()


def _parse_editions(raw: str, variable: str) -> tuple[str, ...]:
    editions = tuple(raw.replace(",", " ").replace(";", " ").split())
    for edition in editions:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", edition):
            raise SettingsError(variable, f"{edition!r} is not an edition ID like GeoLite2-City")
    return editions


def _parse_host(raw: str, variable: str) -> str:
    host = raw.strip().rstrip("/")
    if host and not re.fullmatch(r"(https?://)?[A-Za-z0-9.\-\[\]:]+(/[^\s]*)?", host):
        raise SettingsError(variable, f"{raw!r} is not a host name or http(s) URL")
    return host


def _parse_urls(raw: str, variable: str) -> tuple[str, ...]:
    urls = tuple(item for item in raw.split() if item)
    for item in urls:
        if not re.match(r"^([A-Za-z0-9_.-]+=)?https?://\S+$", item):
            raise SettingsError(variable, f"{item!r} is not an http(s) URL (or NAME=URL)")
    return urls


def _parse_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(raw: str, variable: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(variable, f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def _parse_redis_url(raw: str, variable: str) -> str | None:
    url = raw.strip()
    if not url:
        return None
    problem = f"{raw!r} is not a Redis URL like 'redis://host:6379/0' or 'unix:///run/redis.sock'"
    parts = urlsplit(url)
    try:
        target = parts.path if parts.scheme == "unix" else parts.hostname
        parts.port  # noqa: B018  (validates the port)
    except ValueError:
        raise SettingsError(variable, problem) from None
    if parts.scheme not in {"redis", "rediss", "unix"} or not target:
        raise SettingsError(variable, problem)
    return url


def _parse_rate_limit(raw: str, variable: str) -> str:
    from limits import parse_many

    items = split_list(raw)
    if not items:
        return ""
    text = ";".join(items)
    try:
        parsed = parse_many(text)
    except ValueError:
        raise SettingsError(
            variable, f"{raw!r} is not a rate limit like '60/minute' or '60/minute;2000/hour'"
        ) from None
    if any(item.amount < 1 for item in parsed):
        raise SettingsError(variable, f"{raw!r}: every limit must allow at least 1 request")
    return text


def _parse_text(raw: str, variable: str) -> str:
    return raw.strip()


def _parse_tile_url(raw: str, variable: str) -> str:
    url = raw.strip()
    if url and (
        not re.match(r"^https?://[^/\s]+/\S*$", url)
        or not all(part in url for part in ("{z}", "{x}", "{y}"))
    ):
        raise SettingsError(
            variable, f"{url!r} is not an http(s) tile URL template with {{z}}, {{x}} and {{y}}"
        )
    return url


def _parse_database_url(raw: str, variable: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    if not re.match(r"^postgres(ql)?://", value):
        raise SettingsError(variable, "must be a postgresql://user:password@host:port/db URL")
    try:
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(value)
    except Exception as exc:  # psycopg.ProgrammingError: names libpq's complaint
        raise SettingsError(variable, f"not a valid PostgreSQL URL: {exc}") from None
    ports = str(params.get("port") or "5432").split(",")
    if not all(port.isdigit() and 0 < int(port) < 65536 for port in ports):
        raise SettingsError(variable, f"invalid port {params.get('port')!r}")
    return value


_SIZE_RE = re.compile(r"^(\d+)\s*([kmgt]?)i?b?$", re.I)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _parse_size(minimum: int, maximum: int) -> Callable[[str, str], int]:
    def parse(raw: str, variable: str) -> int:
        match = _SIZE_RE.match(raw.strip())
        if not match:
            raise SettingsError(variable, f"{raw!r} is not a size like '500M', '2G' or '1048576'")
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
        if not minimum <= value <= maximum:
            raise SettingsError(variable, f"{raw!r} is outside {minimum}..{maximum} bytes")
        return value

    return parse


_SERVER_NAME_RE = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")


def _parse_server_names(raw: str, variable: str) -> tuple[str, ...]:
    names = split_list(raw)
    for name in names:
        bracketed = name.startswith("[") and name.endswith("]")
        if bracketed:
            try:
                ipaddress.IPv6Address(name[1:-1])
            except ValueError:
                raise SettingsError(variable, f"{name!r} is not an IPv6 address") from None
        elif not _SERVER_NAME_RE.match(name) or len(name) > 253:
            raise SettingsError(
                variable, f"{name!r} is not a host name like 'geo.example.com' or '*.example.com'"
            )
    return tuple(names)


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
            _parse_optional_path,
            "Path of a MaxMind-format City or Country database (GeoLite2, DB-IP, IPinfo). "
            "Default: the GeoLite2 City database bundled with the package.",
            "/data/GeoLite2-City.mmdb",
        ),
    )
    asn_db: Path | None = field(
        default=None,
        metadata=_env(
            "IPGEO_ASN_DB",
            _parse_optional_path,
            "Path of an optional ASN (or ISP) database; adds `asn` and `asn_org`.",
            "/data/GeoLite2-ASN.mmdb",
        ),
    )
    data_dir: Path = field(
        default_factory=_default_data_dir,
        metadata=_env(
            "IPGEO_DATA_DIR",
            _parse_path,
            "Writable directory for runtime state (uploads, job results, embedded Redis).",
            "/var/lib/ipgeo",
        ),
    )
    trusted_proxies: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_TRUSTED_PROXIES",
            parse_networks,
            "Proxies (IPs/CIDRs) whose `X-Forwarded-For`/`X-Real-IP` headers are believed. "
            "Default: none, so the direct peer is the client.",
            "127.0.0.1;10.0.0.0/8",
        ),
    )
    languages: tuple[str, ...] = field(
        default=("en",),
        metadata=_env(
            "IPGEO_LANGUAGES",
            _parse_languages,
            "Preferred languages for place names, in order; English is always the last fallback.",
            "de,en",
        ),
    )
    cors_origins: tuple[str, ...] = field(
        default=("*",),
        metadata=_env(
            "IPGEO_CORS_ORIGINS",
            _parse_origins,
            "Origins allowed to call the GET API from browsers (`*` for any, empty for none).",
            "https://example.com",
        ),
    )
    batch_limit: int = field(
        default=1000,
        metadata=_env(
            "IPGEO_BATCH_LIMIT",
            _parse_int(1, 100_000),
            "Most queries accepted by one `POST /api/v1/batch` request.",
            "1000",
        ),
    )
    answer_cache_size: int = field(
        default=50_000,
        metadata=_env(
            "IPGEO_ANSWER_CACHE_SIZE",
            _parse_int(0, 10_000_000),
            "Rendered lookup answers kept per worker process (LRU; dropped on a database "
            "reload; `0` turns the cache off).",
            "50000",
        ),
    )
    lean_path: bool = field(
        default=True,
        metadata=_env(
            "IPGEO_LEAN_PATH",
            _parse_bool,
            "Answer plain `GET /api/v1/lookup/<ip>` requests (no query string, JSON) without "
            "Flask's request machinery, with identical answers and headers (only without an "
            "allowlist, rate limits or restricted CORS origins).",
            "true",
        ),
    )
    dns_timeout: float = field(
        default=2.0,
        metadata=_env(
            "IPGEO_DNS_TIMEOUT",
            _parse_float(0.1, 30.0),
            "Total seconds allowed to resolve a domain name (A and AAAA together).",
            "2",
        ),
    )
    dns_servers: tuple[tuple[str, int], ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_DNS_SERVERS",
            _parse_dns_servers,
            "Name servers (`ip` or `ip:port`) used for domain lookups. Default: the system's.",
            "1.1.1.1;9.9.9.9",
        ),
    )
    reverse_dns: bool = field(
        default=False,
        metadata=_env(
            "IPGEO_REVERSE_DNS",
            _parse_bool,
            "Fill `hostname` for IP queries with a reverse (PTR) lookup.",
            "false",
        ),
    )
    map_tiles: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAP_TILES",
            _parse_tile_url,
            "Online map tiles for the web pages: a URL template with `{z}`, `{x}`, `{y}`. "
            "Default: none, so maps draw the bundled world outline and need no network.",
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        ),
    )
    map_attribution: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAP_ATTRIBUTION",
            _parse_text,
            "Attribution text shown on maps that use `IPGEO_MAP_TILES` (HTML is escaped).",
            "© OpenStreetMap contributors",
        ),
    )
    database_url: str | None = field(
        default=None,
        metadata=_env(
            "IPGEO_DATABASE_URL",
            _parse_database_url,
            "PostgreSQL/PostGIS database for time-zone fill-in (load it with "
            "`ipgeo db load-timezones`). Default: none, the embedded `timezonefinder` polygons.",
            "postgresql://ipgeo:secret@db:5432/ipgeo",
        ),
    )
    database_timeout: float = field(
        default=0.5,
        metadata=_env(
            "IPGEO_DATABASE_TIMEOUT",
            _parse_float(0.01, 60.0),
            "Seconds a PostGIS time-zone query may take (statement timeout) before the lookup "
            "falls back to the embedded polygons.",
            "0.5",
        ),
    )
    tz_nearest_km: float = field(
        default=30.0,
        metadata=_env(
            "IPGEO_TZ_NEAREST_KM",
            _parse_float(0.0, 500.0),
            "With PostGIS: a point outside every land time-zone polygon (just off the coast) "
            "takes the zone of the nearest polygon within this distance; `0` disables it.",
            "30",
        ),
    )
    log_format: str = field(
        default="text",
        metadata=_env(
            "IPGEO_LOG_FORMAT",
            _parse_choice("text", "json"),
            "Log format: `text` for people, `json` for log collectors.",
            "json",
        ),
    )

    redis_url: str | None = field(
        default=None,
        metadata=_env(
            "IPGEO_REDIS_URL",
            _parse_redis_url,
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
            _parse_int(0, 10 * 365 * 86400),
            "Seconds without a visit after which an IP's visit counter is forgotten (0: never).",
            "2592000",
        ),
    )
    rate_limit: str = field(
        default="",
        metadata=_env(
            "IPGEO_RATE_LIMIT",
            _parse_rate_limit,
            "Requests each client IP may make, e.g. `60/minute;2000/hour` (a batch counts one "
            "per query). Default: no limit.",
            "60/minute;2000/hour",
        ),
    )
    rate_limit_exempt: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_RATE_LIMIT_EXEMPT",
            parse_networks,
            "Client networks (IPs/CIDRs) that are never rate limited.",
            "10.0.0.0/8;fd00::/8",
        ),
    )
    allowed: tuple[IPNetwork, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_ALLOWED",
            parse_networks,
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
            _parse_optional_path,
            "Directory `ipgeo db update` writes databases to. Default: the directory of "
            "`IPGEO_CITY_DB`, else `IPGEO_DATA_DIR/databases`.",
            "/data",
        ),
    )
    maxmind_account_id: int | None = field(
        default=None,
        metadata=_env(
            "IPGEO_MAXMIND_ACCOUNT_ID",
            _parse_optional_int(1, 2**31 - 1),
            "MaxMind account ID for `ipgeo db update` (overrides `AccountID` of GeoIP.conf).",
            "123456",
        ),
    )
    maxmind_license_key: str = field(
        default="",
        repr=False,
        metadata=_env(
            "IPGEO_MAXMIND_LICENSE_KEY",
            _parse_secret,
            "MaxMind license key for `ipgeo db update` (overrides `LicenseKey`).",
            "xxxxxx_xxxxxxxxxxxx_mmk",
        ),
    )
    maxmind_editions: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_MAXMIND_EDITIONS",
            _parse_editions,
            "Edition IDs `ipgeo db update` fetches (overrides `EditionIDs`). Default: "
            "GeoLite2-City GeoLite2-ASN.",
            "GeoLite2-City GeoLite2-ASN",
        ),
    )
    maxmind_host: str = field(
        default="",
        metadata=_env(
            "IPGEO_MAXMIND_HOST",
            _parse_host,
            "Update server (host name or URL) speaking geoipupdate's protocol (overrides "
            "`Host`). Default: updates.maxmind.com.",
            "updates.maxmind.com",
        ),
    )
    update_urls: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_UPDATE_URLS",
            _parse_urls,
            "Space-separated plain URLs of `.mmdb`, `.mmdb.gz` or `.tar.gz` files that "
            "`ipgeo db update` fetches (DB-IP lite, IPinfo lite); `NAME=URL` sets the file "
            "name, a `#sha256=HEX` fragment a checksum.",
            "dbip-city-lite.mmdb=https://example.com/dbip-city-lite.mmdb.gz",
        ),
    )
    db_reload_interval: float = field(
        default=5.0,
        metadata=_env(
            "IPGEO_DB_RELOAD_INTERVAL",
            _parse_float(0.0, 3600.0),
            "Seconds between checks whether a database file was replaced (then it is "
            "reloaded without dropping requests; SIGHUP checks at once). 0 turns checks off.",
            "5",
        ),
    )
    db_max_age_days: int = field(
        default=0,
        metadata=_env(
            "IPGEO_DB_MAX_AGE_DAYS",
            _parse_int(0, 100_000),
            "`/readyz` reports the database as degraded when its build is older than this "
            "many days (0: never).",
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
            parse_networks,
            "Client networks allowed to read `/metrics` (others get 403; empty: nobody). "
            "Default: loopback only.",
            "127.0.0.1;10.0.0.0/8",
        ),
    )
    max_upload: int = field(
        default=1024**3,
        metadata=_env(
            "IPGEO_MAX_UPLOAD",
            _parse_size(1024, 1024**4),
            "Largest file accepted by `POST /api/v1/jobs` (bytes, or with K, M, G); bigger "
            "uploads get 413. Uploads are streamed to `IPGEO_DATA_DIR/jobs`.",
            "1G",
        ),
    )
    job_timeout: int = field(
        default=3600,
        metadata=_env(
            "IPGEO_JOB_TIMEOUT",
            _parse_int(10, 7 * 86400),
            "Seconds a bulk job may run before the worker stops it (it then ends `failed`).",
            "3600",
        ),
    )
    job_result_ttl: int = field(
        default=86400,
        metadata=_env(
            "IPGEO_JOB_RESULT_TTL",
            _parse_int(60, 365 * 86400),
            "Seconds a finished or canceled job and its result files are kept.",
            "86400",
        ),
    )
    job_failure_ttl: int = field(
        default=7 * 86400,
        metadata=_env(
            "IPGEO_JOB_FAILURE_TTL",
            _parse_int(60, 365 * 86400),
            "Seconds a failed job (its error and its input file) is kept.",
            "604800",
        ),
    )
    job_retries: int = field(
        default=0,
        metadata=_env(
            "IPGEO_JOB_RETRIES",
            _parse_int(0, 10),
            "How often a job whose worker died (or that failed unexpectedly) is run again. Bad "
            "input is never retried.",
            "1",
        ),
    )
    job_progress_interval: float = field(
        default=1.0,
        metadata=_env(
            "IPGEO_JOB_PROGRESS_INTERVAL",
            _parse_float(0.05, 60.0),
            "Seconds between two progress reports of a running job (saved in Redis).",
            "1",
        ),
    )
    dashboard_user: str = field(
        default="",
        metadata=_env(
            "IPGEO_DASHBOARD_USER",
            _parse_text,
            "User name for rq-dashboard at `/admin/rq` (HTTP basic auth). With no user or no "
            "password the dashboard is not mounted.",
            "admin",
        ),
    )
    dashboard_password: str = field(
        default="",
        metadata=_env(
            "IPGEO_DASHBOARD_PASSWORD",
            _parse_text,
            "Password for rq-dashboard at `/admin/rq`.",
            "a-long-random-secret",
        ),
    )
    server_names: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "IPGEO_SERVER_NAMES",
            _parse_server_names,
            "Host names nginx answers for (`ipgeo up`, the containers); requests for any other "
            "host are dropped (444). Default: any host name.",
            "geo.example.com;localhost",
        ),
    )

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
