"""Update configuration: a geoipupdate ``GeoIP.conf``, ``IPGEO_*`` settings and options."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ipgeo.dbupdate.errors import ConfigError
from ipgeo.settings import Settings
from ipgeo.settings_groups import DB_MAX_DOWNLOAD_DEFAULT

DEFAULT_HOST = "https://updates.maxmind.com"
DEFAULT_EDITIONS = ("GeoLite2-City", "GeoLite2-ASN")
# ``--source``: DB-IP Lite alone, or ``auto`` (MaxMind/URLs when configured, else DB-IP Lite)
SOURCES = ("dbip-lite", "auto")
LOCK_NAME = ".geoipupdate.lock"  # the same name as geoipupdate, so the two never race
_EDITION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(h|m|s|ms)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
# Options of geoipupdate that no longer do anything there either.
_DEPRECATED_KEYS = {"Protocol", "SkipHostnameVerification", "SkipPeerVerification"}


@dataclass(frozen=True, slots=True)
class UrlSource:
    """A plain download URL (``.mmdb``, ``.mmdb.gz`` or ``.tar.gz``) and its file name."""

    url: str
    filename: str
    checksum: tuple[str, str] | None = None  # (algorithm, hex digest) from ``#sha256=...``


@dataclass(frozen=True, slots=True)
class UpdateConfig:
    """Everything one ``ipgeo db update`` run needs."""

    directory: Path
    account_id: int | None = None
    license_key: str = ""
    editions: tuple[str, ...] = ()
    host: str = DEFAULT_HOST
    urls: tuple[UrlSource, ...] = ()
    lock_file: Path | None = None
    proxy: str | None = None
    retry_for: float = 300.0
    preserve_file_times: bool = False
    max_download: int = DB_MAX_DOWNLOAD_DEFAULT  # bytes, downloaded and unpacked alike
    dbip_url: str | None = None  # DB-IP's download directory: fetch its Lite databases

    @property
    def lock_path(self) -> Path:
        """The lock file guarding the database directory."""
        return self.lock_file or self.directory / LOCK_NAME

    @property
    def uses_maxmind(self) -> bool:
        """True when MaxMind editions are to be updated."""
        return bool(self.account_id and self.license_key and self.editions)

    def __repr__(self) -> str:  # never print the license key
        return f"UpdateConfig(directory={self.directory}, editions={self.editions}, ...)"


def normalize_host(host: str) -> str:
    """``updates.maxmind.com`` → ``https://updates.maxmind.com``; explicit schemes are kept."""
    host = host.strip().rstrip("/")
    if not host:
        raise ConfigError("the update host is empty")
    return host if re.match(r"^https?://", host, re.IGNORECASE) else f"https://{host}"


def parse_duration(raw: str) -> float:
    """Parse a Go-style duration such as ``5m``, ``1h30m`` or ``90s`` into seconds."""
    text = raw.strip()
    if text.isdigit():
        return float(text)
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(num + unit for num, unit in parts) != text:
        raise ConfigError(f"{raw!r} is not a duration like 5m or 90s")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)


def parse_geoip_conf(path: Path) -> dict[str, str]:
    """Read a geoipupdate configuration file into ``{key: value}`` (keys as geoipupdate's)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    values: dict[str, str] = {}
    aliases = {"UserId": "AccountID", "ProductIds": "EditionIDs"}
    known = {
        "AccountID",
        "LicenseKey",
        "EditionIDs",
        "DatabaseDirectory",
        "Host",
        "LockFile",
        "PreserveFileTimes",
        "Proxy",
        "ProxyUserPassword",
        "RetryFor",
        "Parallelism",
    }
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key = aliases.get(key, key)
        value = " ".join(value.split())
        if not value:
            raise ConfigError(f"{path}:{number}: {key} has no value")
        if key in _DEPRECATED_KEYS:
            continue
        if key not in known:
            raise ConfigError(f"{path}:{number}: unknown option {key!r}")
        if key in values:
            raise ConfigError(f"{path}:{number}: {key} is set more than once")
        values[key] = value
    return values


def _account_id(raw: str, where: str) -> int:
    if not raw.strip().isdigit():
        raise ConfigError(f"{where}: account ID {raw!r} is not a number")
    return int(raw)


def _editions(raw: str | tuple[str, ...], where: str) -> tuple[str, ...]:
    items = tuple(raw.replace(",", " ").split()) if isinstance(raw, str) else raw
    for item in items:
        if not _EDITION_RE.match(item):
            raise ConfigError(f"{where}: {item!r} is not an edition ID like GeoLite2-City")
    return items


def parse_url_source(spec: str) -> UrlSource:
    """Parse ``URL`` or ``NAME=URL``; a ``#sha256=HEX`` or ``#md5=HEX`` fragment is a checksum."""
    name = ""
    head, sep, rest = spec.partition("=")
    if sep and "/" not in head and ":" not in head:
        name, spec = head.strip(), rest.strip()
    parts = urlsplit(spec)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(f"{spec!r} is not an http(s) URL")
    checksum = None
    if parts.fragment:
        algorithm, _, digest = parts.fragment.partition("=")
        size = {"sha256": 64, "md5": 32}.get(algorithm.lower())
        if size is None or not re.fullmatch(rf"[0-9a-fA-F]{{{size}}}", digest):
            raise ConfigError(f"{spec!r}: the fragment must be #sha256=HEX or #md5=HEX")
        checksum = (algorithm.lower(), digest.lower())
    if not name:
        name = unquote(parts.path.rsplit("/", 1)[-1])
        for suffix in (".tar.gz", ".tgz", ".gz"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
                break
    if not name.endswith(".mmdb"):
        name += ".mmdb"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.mmdb", name):
        raise ConfigError(f"{spec!r}: cannot use {name!r} as a file name (use NAME=URL)")
    url = parts._replace(fragment="").geturl()
    return UrlSource(url=url, filename=name, checksum=checksum)


def default_directory(settings: Settings) -> Path:
    """Where databases go by default: the settings' database directory."""
    return settings.database_dir


def build_config(
    settings: Settings,
    conf_file: Path | None = None,
    urls: tuple[str, ...] = (),
    directory: Path | None = None,
    retry_for: float | None = None,
    source: str | None = None,
) -> UpdateConfig:
    """Merge GeoIP.conf, then ``IPGEO_*`` settings, then options (later ones win).

    ``source="dbip-lite"`` fetches DB-IP's Lite databases only; ``source="auto"`` does so
    when neither MaxMind credentials nor URLs are configured.
    """
    updates = settings.updates
    config = UpdateConfig(directory=default_directory(settings), max_download=updates.max_download)
    if conf_file is not None:
        config = _apply_conf(config, parse_geoip_conf(conf_file), str(conf_file))
    if updates.account_id is not None:
        config = replace(config, account_id=updates.account_id)
    if updates.license_key:
        config = replace(config, license_key=updates.license_key)
    if updates.editions:
        config = replace(config, editions=updates.editions)
    if config.account_id and not config.editions:
        config = replace(config, editions=DEFAULT_EDITIONS)
    if updates.host:
        config = replace(config, host=normalize_host(updates.host))
    url_specs = urls or updates.urls
    config = replace(config, urls=tuple(parse_url_source(spec) for spec in url_specs))
    if directory is not None:
        config = replace(config, directory=directory)
    if retry_for is not None:
        config = replace(config, retry_for=retry_for)
    dbip_only = replace(
        config, account_id=None, license_key="", editions=(), urls=(), dbip_url=updates.dbip_url
    )
    if source == "dbip-lite":
        return dbip_only
    if source == "auto" and not config.account_id and not config.license_key and not config.urls:
        return dbip_only
    if config.account_id and not config.license_key:
        raise ConfigError("a MaxMind account ID is set but no license key (LicenseKey)")
    if config.license_key and not config.account_id:
        raise ConfigError("a MaxMind license key is set but no account ID (AccountID)")
    if not config.uses_maxmind and not config.urls:
        raise ConfigError(
            "nothing to update: pass --source dbip-lite (no account needed), give --config "
            "GeoIP.conf, set IPGEO_MAXMIND_ACCOUNT_ID and IPGEO_MAXMIND_LICENSE_KEY, or pass --url"
        )
    return config


def _apply_conf(config: UpdateConfig, values: dict[str, str], where: str) -> UpdateConfig:
    if values.get("AccountID") == "999999" or values.get("LicenseKey") == "000000000000":
        raise ConfigError(f"{where}: the old placeholder account 999999 no longer works")
    changes: dict[str, object] = {}
    if "AccountID" in values:
        changes["account_id"] = _account_id(values["AccountID"], where)
    if "LicenseKey" in values:
        changes["license_key"] = values["LicenseKey"]
    if "EditionIDs" in values:
        changes["editions"] = _editions(values["EditionIDs"], where)
    if "DatabaseDirectory" in values:
        changes["directory"] = Path(values["DatabaseDirectory"]).expanduser()
    if "Host" in values:
        changes["host"] = normalize_host(values["Host"])
    if "LockFile" in values:
        changes["lock_file"] = Path(values["LockFile"]).expanduser()
    if "PreserveFileTimes" in values:
        if values["PreserveFileTimes"] not in {"0", "1"}:
            raise ConfigError(f"{where}: PreserveFileTimes must be 0 or 1")
        changes["preserve_file_times"] = values["PreserveFileTimes"] == "1"
    if "RetryFor" in values:
        changes["retry_for"] = parse_duration(values["RetryFor"])
    if "Proxy" in values:
        proxy = values["Proxy"]
        if "://" not in proxy:
            proxy = f"http://{proxy}"
        if "ProxyUserPassword" in values and "@" not in proxy:
            scheme, _, rest = proxy.partition("://")
            proxy = f"{scheme}://{values['ProxyUserPassword']}@{rest}"
        changes["proxy"] = proxy
    return replace(config, **changes)  # type: ignore[arg-type]
