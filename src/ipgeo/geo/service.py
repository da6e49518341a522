"""The lookup service: queries in, ``LookupResult`` out."""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from pathlib import Path

from ipgeo.geo.database import MaxMindDatabase, bundled_city_db, place_from_record
from ipgeo.geo.dns import DnsResolver, HostResolver
from ipgeo.geo.errors import DatabaseUnavailable, NotFound
from ipgeo.geo.models import DatabaseInfo, LookupResult, Place, TimeZoneInfo
from ipgeo.geo.queries import check_public, normalize_domain, parse_ip
from ipgeo.geo.timezones import EmbeddedTimezoneLocator, TimezoneLocator, zone_details
from ipgeo.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
    ) -> None:
        self.city = MaxMindDatabase(city_db or bundled_city_db())
        self.asn = MaxMindDatabase(asn_db) if asn_db else None
        self.languages = languages
        self.resolver: HostResolver = resolver or DnsResolver()
        self.timezones: TimezoneLocator = timezones or EmbeddedTimezoneLocator()
        self.reverse_dns = reverse_dns

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
        )

    @property
    def databases(self) -> list[DatabaseInfo]:
        """Metadata of every open database (city first)."""
        return [self.city.info] + ([self.asn.info] if self.asn else [])

    def languages_for(self, lang: str | None) -> tuple[str, ...]:
        """Language preference for a request: ``lang`` first, then the configured ones."""
        if not lang:
            return self.languages
        return (lang, *(item for item in self.languages if item != lang))

    def lookup(self, query: str, lang: str | None = None) -> LookupResult:
        """Look up an IP address or a domain name; raise a ``GeoError`` when impossible."""
        ip = parse_ip(query)
        if ip is not None:
            hostname = self.resolver.reverse(ip) if self.reverse_dns else None
            return self.lookup_ip(ip, query=query.strip(), hostname=hostname, lang=lang)
        domain = normalize_domain(query)
        addresses = self.resolver.resolve(domain)
        primary = addresses[0]
        base = self.lookup_ip(primary, query=query.strip(), hostname=domain, lang=lang)
        return replace(base, addresses=tuple(str(address) for address in addresses))

    def lookup_ip(
        self,
        ip: IPAddress,
        query: str | None = None,
        hostname: str | None = None,
        lang: str | None = None,
    ) -> LookupResult:
        """Look up one public IP address; raise ``ReservedAddress`` or ``NotFound``."""
        check_public(ip)
        place = self.place(ip, lang)
        asn, asn_org = self.asn_of(ip)
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

    def place(self, ip: IPAddress, lang: str | None = None) -> Place | None:
        """Return the raw place of ``ip`` from the City/Country database."""
        try:
            record, network = self.city.get(ip)
        except ValueError:
            raise DatabaseUnavailable("the location database cannot be read") from None
        if record is None:
            return None
        return place_from_record(record, network, self.languages_for(lang))

    def asn_of(self, ip: IPAddress) -> tuple[int | None, str | None]:
        """Return ``(asn, organisation)`` from the ASN database, or from the City record."""
        if self.asn is None:
            return None, None
        record, _ = self.asn.get(ip)
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
        """Close the databases."""
        close_timezones = getattr(self.timezones, "close", None)
        if callable(close_timezones):
            close_timezones()
        self.city.close()
        if self.asn:
            self.asn.close()
