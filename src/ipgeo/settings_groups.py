"""How a setting is declared and read from the environment, and the groups of settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from ipgeo import settings_parsers as p

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    Declared = TypeVar("Declared", bound=DataclassInstance)

__all__ = [
    "DB_MAX_DOWNLOAD_DEFAULT",
    "DashboardSettings",
    "DnsSettings",
    "MapSettings",
    "TimezoneSettings",
    "UpdateSettings",
    "group",
    "read_env",
    "setting",
    "variables",
]

# Databases are a few hundred MB at most today; this leaves room and still bounds the disk.
DB_MAX_DOWNLOAD_DEFAULT = 2 * 1024**3


def setting(
    default: Any,
    name: str,
    parser: Callable[[str, str], Any],
    doc: str,
    example: str = "",
    *,
    factory: Callable[[], Any] | None = None,
    hidden: bool = False,
) -> Any:
    """Declare a settings field read from the environment variable ``name``.

    ``factory`` makes the default at each construction instead; ``hidden`` keeps the value
    out of ``repr`` (secrets).
    """
    metadata = {"env": name, "parser": parser, "doc": doc, "example": example}
    if factory is not None:
        return field(default_factory=factory, repr=not hidden, metadata=metadata)
    return field(default=default, repr=not hidden, metadata=metadata)


def group(cls: type[DataclassInstance]) -> Any:
    """Declare a settings field holding the group ``cls``, read from its own variables."""
    return field(default_factory=cls, metadata={"group": cls})


def variables(cls: type[DataclassInstance]) -> Iterator[Field[Any]]:
    """Yield the field of every environment variable of ``cls``, groups expanded in place."""
    for spec in fields(cls):
        if "group" in spec.metadata:
            yield from variables(spec.metadata["group"])
        else:
            yield spec


def read_env(cls: type[Declared], environ: Mapping[str, str]) -> Declared:
    """Build ``cls`` (settings or a group) from ``environ``; raise ``SettingsError``."""
    values: dict[str, Any] = {}
    for spec in fields(cls):
        if "group" in spec.metadata:
            values[spec.name] = read_env(spec.metadata["group"], environ)
        elif (name := spec.metadata["env"]) in environ:
            values[spec.name] = spec.metadata["parser"](environ[name], name)
    build: Callable[..., Declared] = cls
    return build(**values)


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How domain names and reverse (PTR) names are resolved."""

    timeout: float = setting(
        2.0,
        "IPGEO_DNS_TIMEOUT",
        p.parse_float(0.1, 30.0),
        "Total seconds allowed to resolve a domain name (A and AAAA together).",
        "2",
    )
    servers: tuple[tuple[str, int], ...] = setting(
        (),
        "IPGEO_DNS_SERVERS",
        p.parse_dns_servers,
        "Name servers (`ip` or `ip:port`) used for domain lookups. Default: the system's.",
        "1.1.1.1;9.9.9.9",
    )
    reverse_lookup: bool = setting(
        False,
        "IPGEO_REVERSE_DNS",
        p.parse_bool,
        "Fill `hostname` for IP queries with a reverse (PTR) lookup.",
        "false",
    )


@dataclass(frozen=True, slots=True)
class MapSettings:
    """The online map tiles of the web pages."""

    tiles: str = setting(
        "",
        "IPGEO_MAP_TILES",
        p.parse_tile_url,
        "Online map tiles for the web pages: a URL template with `{z}`, `{x}`, `{y}`. "
        "Default: none, so maps draw the bundled world outline and need no network.",
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
    )
    attribution: str = setting(
        "",
        "IPGEO_MAP_ATTRIBUTION",
        p.parse_text,
        "Attribution text shown on maps that use `IPGEO_MAP_TILES` (HTML is escaped).",
        "© OpenStreetMap contributors",
    )


@dataclass(frozen=True, slots=True)
class TimezoneSettings:
    """The PostGIS time-zone fill-in."""

    database_url: str | None = setting(
        None,
        "IPGEO_DATABASE_URL",
        p.parse_database_url,
        "PostgreSQL/PostGIS database for time-zone fill-in (load it with "
        "`ipgeo db load-timezones`). Default: none, the embedded `timezonefinder` polygons.",
        "postgresql://ipgeo:secret@db:5432/ipgeo",
    )
    timeout: float = setting(
        0.5,
        "IPGEO_DATABASE_TIMEOUT",
        p.parse_float(0.01, 60.0),
        "Seconds a PostGIS time-zone query may take (statement timeout) before the lookup "
        "falls back to the embedded polygons.",
        "0.5",
    )
    nearest_km: float = setting(
        30.0,
        "IPGEO_TZ_NEAREST_KM",
        p.parse_float(0.0, 500.0),
        "With PostGIS: a point outside every land time-zone polygon (just off the coast) "
        "takes the zone of the nearest polygon within this distance; `0` disables it.",
        "30",
    )


@dataclass(frozen=True, slots=True)
class UpdateSettings:
    """Where and how ``ipgeo db update`` fetches databases."""

    account_id: int | None = setting(
        None,
        "IPGEO_MAXMIND_ACCOUNT_ID",
        p.parse_optional_int(1, 2**31 - 1),
        "MaxMind account ID for `ipgeo db update` (overrides `AccountID` of GeoIP.conf).",
        "123456",
    )
    license_key: str = setting(
        "",
        "IPGEO_MAXMIND_LICENSE_KEY",
        p.parse_secret,
        "MaxMind license key for `ipgeo db update` (overrides `LicenseKey`).",
        "xxxxxx_xxxxxxxxxxxx_mmk",
        hidden=True,
    )
    editions: tuple[str, ...] = setting(
        (),
        "IPGEO_MAXMIND_EDITIONS",
        p.parse_editions,
        "Edition IDs `ipgeo db update` fetches (overrides `EditionIDs`). Default: "
        "GeoLite2-City GeoLite2-ASN.",
        "GeoLite2-City GeoLite2-ASN",
    )
    host: str = setting(
        "",
        "IPGEO_MAXMIND_HOST",
        p.parse_host,
        "Update server (host name or URL) speaking geoipupdate's protocol (overrides "
        "`Host`). Default: updates.maxmind.com.",
        "updates.maxmind.com",
    )
    urls: tuple[str, ...] = setting(
        (),
        "IPGEO_UPDATE_URLS",
        p.parse_urls,
        "Space-separated plain URLs of `.mmdb`, `.mmdb.gz` or `.tar.gz` files that "
        "`ipgeo db update` fetches (DB-IP lite, IPinfo lite); `NAME=URL` sets the file "
        "name, a `#sha256=HEX` fragment a checksum.",
        "dbip-city-lite.mmdb=https://example.com/dbip-city-lite.mmdb.gz",
    )
    dbip_url: str = setting(
        "https://download.db-ip.com/free/",
        "IPGEO_DBIP_URL",
        p.parse_directory_url,
        "Where `ipgeo db update --source dbip-lite` fetches DB-IP's monthly "
        "`dbip-city-lite-YYYY-MM.mmdb.gz` and `dbip-asn-lite-YYYY-MM.mmdb.gz`.",
        "https://download.db-ip.com/free/",
    )
    max_download: int = setting(
        DB_MAX_DOWNLOAD_DEFAULT,
        "IPGEO_DB_MAX_DOWNLOAD",
        p.parse_size(1024, 1024**4),
        "Largest database `ipgeo db update` accepts (bytes, or with K, M, G), both as "
        "downloaded and as unpacked from `.gz`/`.tar.gz`; a bigger one fails (the "
        "installed file stays). Default: 2G.",
        "2G",
    )


@dataclass(frozen=True, slots=True)
class DashboardSettings:
    """The rq-dashboard at ``/admin/rq`` and its login."""

    user: str = setting(
        "",
        "IPGEO_DASHBOARD_USER",
        p.parse_text,
        "User name for rq-dashboard at `/admin/rq` (HTTP basic auth). With no user or no "
        "password the dashboard is not mounted.",
        "admin",
    )
    password: str = setting(
        "",
        "IPGEO_DASHBOARD_PASSWORD",
        p.parse_text,
        "Password for rq-dashboard at `/admin/rq`.",
        "a-long-random-secret",
        hidden=True,
    )
    auth_limit: str = setting(
        "5/minute",
        "IPGEO_DASHBOARD_AUTH_LIMIT",
        p.parse_rate_limit,
        "Failed dashboard logins each client IP may make before it gets 429 (counted in "
        "Redis); a correct password is never counted or slowed. Empty: no limit.",
        "5/minute;20/hour",
    )
