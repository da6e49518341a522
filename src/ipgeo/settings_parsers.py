"""Parsers for ``IPGEO_*`` values: each takes ``(raw, variable)`` and raises ``SettingsError``."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
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


_IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def parse_networks(raw: str, variable: str) -> tuple[IPNetwork, ...]:
    """Parse a list of IPs and CIDRs; a bad entry raises ``SettingsError`` naming it.

    Client addresses are compared as IPv4 when IPv4-mapped, so a mapped entry is turned into
    its IPv4 network (``::ffff:192.0.2.0/120`` is ``192.0.2.0/24``); as written it would never
    match. An entry with a zone id (``fe80::%eth0/64``) is refused: that names an interface.
    """
    networks: list[IPNetwork] = []
    for item in split_list(raw):
        try:
            network = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                variable, f"{item!r} is not an IP address or CIDR network"
            ) from None
        if isinstance(network, ipaddress.IPv6Network):
            if network.network_address.scope_id is not None:
                raise SettingsError(
                    variable, f"{item!r} has a zone id, which names an interface: leave it out"
                )
            if network.subnet_of(_IPV4_MAPPED):
                mapped = int(network.network_address) & 0xFFFFFFFF
                networks.append(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
                continue
        networks.append(network)
    return tuple(networks)


def parse_path(raw: str, variable: str) -> Path:
    """A filesystem path (``~`` expanded)."""
    return Path(raw).expanduser()


def parse_optional_path(raw: str, variable: str) -> Path | None:
    """A filesystem path, or ``None`` when empty."""
    return Path(raw).expanduser() if raw.strip() else None


def parse_int(minimum: int, maximum: int) -> Callable[[str, str], int]:
    """A parser for whole numbers within ``minimum..maximum``."""

    def parse(raw: str, variable: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise SettingsError(variable, f"{raw!r} is not a whole number") from None
        if not minimum <= value <= maximum:
            raise SettingsError(variable, f"{value} is outside {minimum}..{maximum}")
        return value

    return parse


def parse_float(minimum: float, maximum: float) -> Callable[[str, str], float]:
    """A parser for numbers within ``minimum..maximum``."""

    def parse(raw: str, variable: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise SettingsError(variable, f"{raw!r} is not a number") from None
        if not minimum <= value <= maximum:
            raise SettingsError(variable, f"{value} is outside {minimum}..{maximum}")
        return value

    return parse


def parse_bool(raw: str, variable: str) -> bool:
    """A boolean: true/false, yes/no, on/off, 1/0."""
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(variable, f"{raw!r} is not a boolean (use true or false)")


def parse_languages(raw: str, variable: str) -> tuple[str, ...]:
    """Language codes in order of preference; English is appended as the fallback."""
    langs = split_list(raw)
    if not langs:
        raise SettingsError(variable, "at least one language is required (e.g. 'en')")
    for lang in langs:
        if not _LANG_RE.match(lang):
            raise SettingsError(variable, f"{lang!r} is not a language code like 'en' or 'pt-BR'")
    if "en" not in langs:
        langs.append("en")
    return tuple(langs)


def parse_origins(raw: str, variable: str) -> tuple[str, ...]:
    """CORS origins: ``*`` or ``scheme://host[:port]`` entries."""
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


def parse_dns_servers(raw: str, variable: str) -> tuple[tuple[str, int], ...]:
    """Name servers as ``ip`` or ``ip:port`` (``[v6]:port``)."""
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


def parse_optional_int(minimum: int, maximum: int) -> Callable[[str, str], int | None]:
    """A parser for an optional whole number within ``minimum..maximum``."""
    parse_whole = parse_int(minimum, maximum)

    def parse(raw: str, variable: str) -> int | None:
        return parse_whole(raw, variable) if raw.strip() else None

    return parse


def parse_secret(raw: str, variable: str) -> str:
    """A secret string (surrounding blanks dropped)."""
    return raw.strip()


def parse_editions(raw: str, variable: str) -> tuple[str, ...]:
    """MaxMind edition IDs, separated by blanks, commas or semicolons."""
    editions = tuple(raw.replace(",", " ").replace(";", " ").split())
    for edition in editions:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", edition):
            raise SettingsError(variable, f"{edition!r} is not an edition ID like GeoLite2-City")
    return editions


def parse_host(raw: str, variable: str) -> str:
    """An update server: a host name or an http(s) URL."""
    host = raw.strip().rstrip("/")
    if host and not re.fullmatch(r"(https?://)?[A-Za-z0-9.\-\[\]:]+(/[^\s]*)?", host):
        raise SettingsError(variable, f"{raw!r} is not a host name or http(s) URL")
    return host


def parse_directory_url(raw: str, variable: str) -> str:
    """An http(s) URL of a download directory, ending in ``/``."""
    url = raw.strip()
    if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise SettingsError(variable, f"{raw!r} is not an http(s) URL")
    return url if url.endswith("/") else url + "/"


def parse_urls(raw: str, variable: str) -> tuple[str, ...]:
    """Blank-separated download URLs (``NAME=URL`` allowed)."""
    urls = tuple(item for item in raw.split() if item)
    for item in urls:
        if not re.match(r"^([A-Za-z0-9_.-]+=)?https?://\S+$", item):
            raise SettingsError(variable, f"{item!r} is not an http(s) URL (or NAME=URL)")
    return urls


def parse_choice(*choices: str) -> Callable[[str, str], str]:
    """A parser accepting one of ``choices`` (case-insensitive)."""

    def parse(raw: str, variable: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(variable, f"{raw!r} is not one of {', '.join(choices)}")
        return value

    return parse


def parse_redis_url(raw: str, variable: str) -> str | None:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL, or ``None`` when empty."""
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


def parse_rate_limit(raw: str, variable: str) -> str:
    """Rate limits such as ``60/minute;2000/hour`` (empty: no limit)."""
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


def parse_text(raw: str, variable: str) -> str:
    """Free text (surrounding blanks dropped)."""
    return raw.strip()


def parse_tile_url(raw: str, variable: str) -> str:
    """An http(s) map tile URL template with ``{z}``, ``{x}`` and ``{y}``."""
    url = raw.strip()
    if url and (
        not re.match(r"^https?://[^/\s]+/\S*$", url)
        or not all(part in url for part in ("{z}", "{x}", "{y}"))
    ):
        raise SettingsError(
            variable, f"{url!r} is not an http(s) tile URL template with {{z}}, {{x}} and {{y}}"
        )
    return url


def parse_database_url(raw: str, variable: str) -> str | None:
    """A ``postgresql://`` URL, or ``None`` when empty."""
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


def parse_size(minimum: int, maximum: int) -> Callable[[str, str], int]:
    """A parser for byte sizes such as ``500M`` or ``2G`` within ``minimum..maximum``."""

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


def parse_server_names(raw: str, variable: str) -> tuple[str, ...]:
    """nginx server names: host names, ``*.example.com`` or ``[v6]`` addresses."""
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


def parse_webservice_accounts(raw: str, variable: str) -> tuple[tuple[str, str], ...]:
    """``account_id:license_key`` pairs, ``;``-separated (MaxMind account ids are numbers)."""
    accounts = []
    for item in (part.strip() for part in raw.split(";")):
        if not item:
            continue
        account_id, colon, key = item.partition(":")
        if not colon or not account_id.strip().isdigit() or not key.strip():
            raise SettingsError(
                variable, "each entry must be account_id:license_key, e.g. 123456:abcdef"
            )
        accounts.append((account_id.strip(), key.strip()))
    return tuple(accounts)
