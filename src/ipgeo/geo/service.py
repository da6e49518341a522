"""The lookup service: queries in, ``LookupResult`` out."""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType

from ipgeo.geo.database import DatabaseError, MaxMindDatabase, bundled_city_db, place_from_record
from ipgeo.geo.dns import DnsResolver, HostResolver
from ipgeo.geo.errors import DatabaseUnavailable, GeoError, NotFound
from ipgeo.geo.models import DatabaseInfo, LookupResult, Place, TimeZoneInfo
from ipgeo.geo.queries import check_public, normalize_domain, parse_ip
from ipgeo.geo.quick import QuickAnswer, QuickLookups
from ipgeo.geo.timezones import EmbeddedTimezoneLocator, TimezoneLocator, zone_details
from ipgeo.metrics import labelled
from ipgeo.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (device, inode, size, mtime in ns): changes whenever a file is replaced or rewritten.
FileSignature = tuple[int, int, int, int]

log = logging.getLogger("ipgeo.geo")


def file_signature(path: Path) -> FileSignature | None:
    """What identifies the current version of a file (``None`` when it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class OpenDatabases:
    """One consistent set of open readers; swapped as a whole on reload, never mutated."""

    city: MaxMindDatabase
    asn: MaxMindDatabase | None
    signatures: tuple[FileSignature | None, FileSignature | None]
    generation: int


class GeoService:
    """Looks up IP addresses and domain names in a City/Country and optional ASN database."""

    def __init__(
        self,
        city_db: Path | None = None,
        asn_db: Path | None = None,
        languages: tuple[str, ...] = ("en",),
        resolver: HostResolver | None = None,
        timezones: TimezoneLocator | None = None,
        reverse_dns: bool = False,
        reload_interval: float = 0.0,
    ) -> None:
        self.city_path = city_db or bundled_city_db()
        self.asn_path = asn_db
        self._open = self._open_databases(generation=1)
        self.reload_interval = reload_interval
        self.last_reload_error: str | None = None
        self._next_check = time.monotonic() + reload_interval
        self._reload_requested = False
        self._failed: tuple[FileSignature | None, FileSignature | None] | None = None
        self._reload_lock = threading.Lock()
        self.languages = languages
        self.resolver: HostResolver = resolver or DnsResolver()
        self.timezones: TimezoneLocator = timezones or EmbeddedTimezoneLocator()
        self.reverse_dns = reverse_dns
        # Imported here: the bulk package imports this module.
        from ipgeo.bulk.reserved import ReservedFilter

        # ``check_public`` costs more than the database lookup (``is_global`` builds
        # networks per call); the filter clears public addresses with one bisect.
        self._reserved = ReservedFilter()
        self._quick = QuickLookups(self)

    @classmethod
    def from_settings(
        cls, settings: Settings, timezones: TimezoneLocator | None = None
    ) -> GeoService:
        """Open the configured databases; raise ``DatabaseError`` when one is unusable."""
        if timezones is None and settings.database_url:
            from ipgeo.geo.postgis_locator import PostgisTimezoneLocator

            timezones = PostgisTimezoneLocator(
                settings.database_url,
                nearest_km=settings.tz_nearest_km,
                timeout=settings.database_timeout,
            )
        return cls(
            city_db=settings.city_db,
            asn_db=settings.asn_db,
            languages=settings.languages,
            resolver=DnsResolver(settings.dns_timeout, settings.dns_servers),
            timezones=timezones,
            reverse_dns=settings.reverse_dns,
            reload_interval=settings.db_reload_interval,
        )

    def _signatures(self) -> tuple[FileSignature | None, FileSignature | None]:
        asn = file_signature(self.asn_path) if self.asn_path else None
        return file_signature(self.city_path), asn

    def _open_databases(self, generation: int) -> OpenDatabases:
        signatures = self._signatures()
        city = MaxMindDatabase(self.city_path)
        asn = MaxMindDatabase(self.asn_path) if self.asn_path else None
        return OpenDatabases(city, asn, signatures, generation)

    @property
    def city(self) -> MaxMindDatabase:
        """The City/Country database currently in service."""
        return self._open.city

    @property
    def asn(self) -> MaxMindDatabase | None:
        """The ASN database currently in service, if any."""
        return self._open.asn

    @property
    def generation(self) -> int:
        """Counts database swaps in this process (starts at 1); cache keys can include it."""
        return self._open.generation

    @property
    def data_version(self) -> str:
        """Names the data in service identically in every process and host (for shared caches)."""
        return "|".join(
            f"{info.database_type}:{info.build_epoch}:{info.node_count}" for info in self.databases
        )

    @property
    def databases(self) -> list[DatabaseInfo]:
        """Metadata of every open database (city first)."""
        current = self._open
        return [current.city.info] + ([current.asn.info] if current.asn else [])

    def request_reload(self) -> None:
        """Check the files at the next lookup instead of waiting (safe in a signal handler)."""
        self._reload_requested = True

    def watch_sighup(self) -> bool:
        """Make SIGHUP request a reload, unless the server already handles SIGHUP itself."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGHUP) not in (signal.SIG_DFL, signal.SIG_IGN):
            return False

        def on_sighup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGHUP, on_sighup)
        return True

    def refresh(self) -> bool:
        """Swap in replaced database files (checked at most every ``reload_interval`` s).

        The new readers are opened completely before one reference is swapped, so lookups
        in flight finish on the old ones, which are unmapped once nothing uses them. A file
        that does not open keeps the old database in service. Returns True after a swap.
        """
        if not self._reload_requested and (
            self.reload_interval <= 0 or time.monotonic() < self._next_check
        ):
            return False
        if not self._reload_lock.acquire(blocking=False):
            return False  # another thread is checking; keep serving meanwhile
        try:
            self._reload_requested = False
            self._next_check = time.monotonic() + self.reload_interval
            return self._reload_if_changed()
        finally:
            self._reload_lock.release()

    def _reload_if_changed(self) -> bool:
        current = self._open
        signatures = self._signatures()
        if signatures in (current.signatures, self._failed):
            return False
        if signatures[0] is None or (self.asn_path and signatures[1] is None):
            self.last_reload_error = "a database file is missing; the old one stays in service"
            self._failed = signatures
            log.error("database reload skipped: %s", self.last_reload_error)
            return False
        try:
            fresh = self._open_databases(current.generation + 1)
        except DatabaseError as exc:
            self.last_reload_error = f"{exc}; the old database stays in service"
            self._failed = signatures
            log.error("database reload failed: %s", self.last_reload_error)
            return False
        self._open = fresh  # one reference swap: atomic for every other thread
        self._failed = None
        self.last_reload_error = None
        log.info(
            "databases reloaded (generation %d): %s",
            fresh.generation,
            ", ".join(f"{info.database_type} built {info.build_date}" for info in self.databases),
        )
        return True

    def languages_for(self, lang: str | None) -> tuple[str, ...]:
        """Language preference for a request: ``lang`` first, then the configured ones."""
        if not lang:
            return self.languages
        return (lang, *(item for item in self.languages if item != lang))

    def lookup(self, query: str, lang: str | None = None) -> LookupResult:
        """Look up an IP address or a domain name; raise a ``GeoError`` when impossible."""
        try:
            result = self._lookup(query, lang)
        except GeoError as exc:
            labelled("lookups", exc.code).inc()
            raise
        labelled("lookups", "found").inc()
        return result

    def _lookup(self, query: str, lang: str | None) -> LookupResult:
        ip = parse_ip(query)
        if ip is not None:
            hostname = self.resolver.reverse(ip) if self.reverse_dns else None
            return self._lookup_ip(ip, query=query.strip(), hostname=hostname, lang=lang)
        domain = normalize_domain(query)
        addresses = self.resolver.resolve(domain)
        primary = addresses[0]
        base = self._lookup_ip(primary, query=query.strip(), hostname=domain, lang=lang)
        return replace(base, addresses=tuple(str(address) for address in addresses))

    def lookup_ip(
        self,
        ip: IPAddress,
        query: str | None = None,
        hostname: str | None = None,
        lang: str | None = None,
    ) -> LookupResult:
        """Look up one public IP address; raise ``ReservedAddress`` or ``NotFound``."""
        try:
            result = self._lookup_ip(ip, query, hostname, lang)
        except GeoError as exc:
            labelled("lookups", exc.code).inc()
            raise
        labelled("lookups", "found").inc()
        return result

    def _lookup_ip(
        self,
        ip: IPAddress,
        query: str | None,
        hostname: str | None,
        lang: str | None,
    ) -> LookupResult:
        if self._reserved.is_reserved(ip):
            check_public(ip)
        self.refresh()
        current = self._open  # one set of readers for the whole lookup
        place = self._place(current, ip, lang)
        asn, asn_org = self._asn_of(current, ip)
        if place is None and asn is None:
            raise NotFound(f"{ip} is not in the database")
        place = place or Place()
        zone = self._zone(place)
        return LookupResult(
            ip=str(ip),
            query=query if query is not None else str(ip),
            version=ip.version,
            network=place.network,
            hostname=hostname,
            continent=place.continent,
            continent_code=place.continent_code,
            country=place.country,
            country_iso=place.country_iso,
            country_eu=place.country_eu,
            region=place.region,
            region_code=place.region_code,
            city=place.city,
            postal_code=place.postal_code,
            latitude=place.latitude,
            longitude=place.longitude,
            accuracy_radius_km=place.accuracy_radius_km,
            time_zone=zone.name if zone else None,
            time_zone_source=zone.source if zone else None,
            utc_offset=zone.utc_offset if zone else None,
            local_time=zone.local_time if zone else None,
            asn=asn,
            asn_org=asn_org,
        )

    def quick_ipv4(self, text: str) -> QuickAnswer | None:
        """``lookup_ip(ip, query=text)`` for a canonical public IPv4 ``text``, as its fields,
        (time zone, source) and JSON, without ``ipaddress`` objects or a ``LookupResult``.

        ``None`` whenever the regular lookup must answer instead: not a canonical dotted quad,
        a reserved or unknown address, an unreadable database, a time zone from polygons.
        """
        try:
            # inet_pton accepts exactly the canonical dotted quads ipaddress accepts
            number = int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        except (OSError, ValueError, TypeError):
            return None
        if self._reserved.is_reserved_number(4, number):
            return None
        self.refresh()
        answer = self._quick.answer(text, number, self._open)
        if answer is not None:
            labelled("lookups", "found").inc()
        return answer

    def place(self, ip: IPAddress, lang: str | None = None) -> Place | None:
        """Return the raw place of ``ip`` from the City/Country database."""
        return self._place(self._open, ip, lang)

    def _place(self, current: OpenDatabases, ip: IPAddress, lang: str | None) -> Place | None:
        try:
            record, network = current.city.get(ip)
        except ValueError:
            raise DatabaseUnavailable("the location database cannot be read") from None
        if record is None:
            return None
        return place_from_record(record, network, self.languages_for(lang))

    def asn_of(self, ip: IPAddress) -> tuple[int | None, str | None]:
        """Return ``(asn, organisation)`` from the ASN database, or from the City record."""
        return self._asn_of(self._open, ip)

    def _asn_of(self, current: OpenDatabases, ip: IPAddress) -> tuple[int | None, str | None]:
        if current.asn is None:
            return None, None
        record, _ = current.asn.get(ip)
        if not record:
            return None, None
        return record.get("autonomous_system_number"), record.get("autonomous_system_organization")

    def _zone(self, place: Place) -> TimeZoneInfo | None:
        if place.time_zone:
            return zone_details(place.time_zone, "database")
        if place.latitude is None or place.longitude is None:
            return None
        name = self.timezones.locate(place.latitude, place.longitude)
        return zone_details(name, "polygon") if name else None

    def close(self) -> None:
        """Close the databases (only when no lookup can run any more)."""
        close_timezones = getattr(self.timezones, "close", None)
        if callable(close_timezones):
            close_timezones()
        current = self._open
        current.city.close()
        if current.asn:
            current.asn.close()
