"""The lookup service: queries in, ``LookupResult`` out."""

from __future__ import annotations

import ipaddress
import logging
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from ipgeo.geo.addresses import network_text, parse_address
from ipgeo.geo.database import DatabaseError, MaxMindDatabase, bundled_city_db
from ipgeo.geo.dns import DnsResolver, HostResolver
from ipgeo.geo.errors import GeoError, NotFound, ReservedAddress
from ipgeo.geo.generation import Generation, file_signature
from ipgeo.geo.models import DatabaseInfo, LookupResult
from ipgeo.geo.queries import check_public, normalize_domain
from ipgeo.geo.records import DEFAULT_RECORDS, ZONE_AT, PlaceRecord, address_of
from ipgeo.geo.reserved import ReservedFilter
from ipgeo.geo.sources import ASN, LOCATION, DatabaseSource, InstalledDatabases
from ipgeo.geo.timezones import EmbeddedTimezoneLocator, TimezoneLocator, zone_details
from ipgeo.geo.tree import FileSignature
from ipgeo.metrics import labelled
from ipgeo.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

log = logging.getLogger("ipgeo.geo")
NO_ZONE = (None, None, None, None)


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
        record_cache_size: int = DEFAULT_RECORDS,
        db_dir: Path | None = None,
    ) -> None:
        # Without a configured path, the newest database installed in ``db_dir`` is served
        # (re-resolved at each reload check), else the bundled City database.
        installed = InstalledDatabases(db_dir) if db_dir is not None else None
        self.sources = (
            DatabaseSource(LOCATION, city_db, installed, bundled_city_db),
            DatabaseSource(ASN, asn_db, installed),
        )
        self.city_path, self.asn_path = self._paths()
        self.record_cache_size = record_cache_size
        self._open = Generation(self.city_path, self.asn_path, 1, record_cache_size)
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
        # ``check_public`` costs more than the database lookup (``is_global`` builds
        # networks per call); the filter clears public addresses with one bisect.
        self.reserved = ReservedFilter()

    @classmethod
    def from_settings(
        cls, settings: Settings, timezones: TimezoneLocator | None = None
    ) -> GeoService:
        """Open the configured databases; raise ``DatabaseError`` when one is unusable."""
        if timezones is None and settings.timezones.database_url:
            from ipgeo.geo.postgis_locator import PostgisTimezoneLocator

            timezones = PostgisTimezoneLocator(
                settings.timezones.database_url,
                nearest_km=settings.timezones.nearest_km,
                timeout=settings.timezones.timeout,
            )
        return cls(
            city_db=settings.city_db,
            asn_db=settings.asn_db,
            languages=settings.languages,
            resolver=DnsResolver(settings.dns.timeout, settings.dns.servers),
            timezones=timezones,
            reverse_dns=settings.dns.reverse_lookup,
            reload_interval=settings.db_reload_interval,
            record_cache_size=settings.record_cache_size,
            db_dir=settings.database_dir,
        )

    def _paths(self) -> tuple[Path, Path | None]:
        city_source, asn_source = self.sources
        city = city_source.resolve()
        if city is None:  # pragma: no cover - the City source always has a fallback
            raise DatabaseError("no City or Country database to serve")
        return city, asn_source.resolve()

    def _signatures(
        self, paths: tuple[Path, Path | None]
    ) -> tuple[FileSignature | None, FileSignature | None]:
        city, asn = paths
        return file_signature(city), file_signature(asn) if asn else None

    def current(self) -> Generation:
        """The generation in service, after the reload check; hold it for a whole lookup."""
        self.refresh()
        return self._open

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
        """Counts database swaps in this process (starts at 1)."""
        return self._open.number

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
        """The one reload check: swap in replaced files (at most every ``reload_interval`` s).

        The new generation is opened completely before one reference is swapped, so lookups
        in flight finish on the old one, which is unmapped once nothing uses it. A file
        that does not open keeps the old databases in service. Returns True after a swap.
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
        paths = self._paths()
        signatures = self._signatures(paths)
        if signatures in (current.signatures, self._failed):
            return False
        if signatures[0] is None or (paths[1] and signatures[1] is None):
            self.last_reload_error = "a database file is missing; the old one stays in service"
            self._failed = signatures
            log.error("database reload skipped: %s", self.last_reload_error)
            return False
        try:
            fresh = Generation(*paths, current.number + 1, self.record_cache_size)
        except DatabaseError as exc:
            self.last_reload_error = f"{exc}; the old database stays in service"
            self._failed = signatures
            log.error("database reload failed: %s", self.last_reload_error)
            return False
        self._open = fresh  # one reference swap: atomic for every other thread
        self.city_path, self.asn_path = paths
        self._failed = None
        self.last_reload_error = None
        log.info(
            "databases reloaded (generation %d): %s",
            fresh.number,
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
        address = parse_address(query)
        if address is not None:
            text, version, number = address
            hostname = (
                self.resolver.reverse(address_of(version, number)) if self.reverse_dns else None
            )
            return self._lookup_number(text, version, number, query.strip(), hostname, lang)
        domain = normalize_domain(query)
        public = self._public_addresses(domain)
        base = self._lookup_ip(public[0], query=query.strip(), hostname=domain, lang=lang)
        return replace(base, addresses=tuple(str(address) for address in public))

    def _public_addresses(self, domain: str) -> list[IPAddress]:
        """The public A and AAAA addresses of ``domain``, A first; private ones are never
        shown (in answers or errors), as they tell about networks behind the service."""
        public: list[IPAddress] = []
        for found in self.resolver.resolve(domain):
            ip = found.ipv4_mapped or found if isinstance(found, ipaddress.IPv6Address) else found
            if not self.reserved.is_reserved_number(ip.version, int(ip)):
                public.append(ip)
        if not public:
            raise ReservedAddress(
                f"the domain {domain} has no public address to locate",
                reason="no public address",
            )
        return public

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
        self, ip: IPAddress, query: str | None, hostname: str | None, lang: str | None
    ) -> LookupResult:
        text = str(ip)
        return self._lookup_number(
            text, ip.version, int(ip), query if query is not None else text, hostname, lang
        )

    def _lookup_number(
        self,
        text: str,
        version: int,
        number: int,
        query: str,
        hostname: str | None,
        lang: str | None,
    ) -> LookupResult:
        """The kernel's single lookup: an address given as canonical text, version, integer."""
        if self.reserved.is_reserved_number(version, number):
            check_public(address_of(version, number))
        current = self.current()  # one generation for the whole lookup
        pointer, prefix = current.find(version, number)
        place = current.place(pointer, version, number, self.languages_for(lang))
        asn, asn_org = current.asn_of(version, number)
        if place is None and asn is None:
            raise NotFound(f"{text} is not in the database")
        network = network_text(version, number, prefix) if place is not None else None
        return self.result(text, query, version, network, hostname, place, asn, asn_org)

    def result(
        self,
        ip: str,
        query: str,
        version: int,
        network: str | None,
        hostname: str | None,
        place: PlaceRecord | None,
        asn: int | None,
        asn_org: str | None,
    ) -> LookupResult:
        """The answer for one address from its record's place, with the clock as of now."""
        if place is None:
            return LookupResult(ip, query, version, None, hostname, asn=asn, asn_org=asn_org)
        named = self.zone_of(place)
        zone = zone_details(*named) if named else None
        clock = (zone.name, zone.source, zone.utc_offset, zone.local_time) if zone else NO_ZONE
        values: tuple[Any, ...] = (
            ip, query, version, network, hostname, *place.values[:ZONE_AT], *clock, asn, asn_org,
        )  # fmt: skip
        return LookupResult(*values)

    def zone_of(self, place: PlaceRecord) -> tuple[str, str] | None:
        """``(time zone, source)`` of a place: from the record, else from polygons."""
        return place.zone(self.timezones.locate)

    def close(self) -> None:
        """Close the databases (only when no lookup can run any more)."""
        close_timezones = getattr(self.timezones, "close", None)
        if callable(close_timezones):
            close_timezones()
        self._open.close()
