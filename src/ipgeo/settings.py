"""Typed, frozen settings built from ``IPGEO_*`` environment variables."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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


def _parse_choice(*choices: str) -> Callable[[str, str], str]:
    def parse(raw: str, variable: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(variable, f"{raw!r} is not one of {', '.join(choices)}")
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
    log_format: str = field(
        default="text",
        metadata=_env(
            "IPGEO_LOG_FORMAT",
            _parse_choice("text", "json"),
            "Log format: `text` for people, `json` for log collectors.",
            "json",
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
