"""The run summary: counts, top places, and the first unparseable lines."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

MAX_SAMPLES = 20


class Facet(NamedTuple):
    """The values of an answer that the summary counts by."""

    country_iso: str | None
    country: str | None
    region_code: str | None
    region: str | None
    city: str | None
    asn: int | None
    asn_org: str | None
    time_zone: str | None


@dataclass
class BadLine:
    """One unparseable line, as reported."""

    source: str
    line: int
    reason: str
    text: str


@dataclass
class Summary:
    """What a bulk run read and found. ``to_dict()`` is its JSON form.

    Counts are per line (per row for CIDR/range inputs), so ``valid = located + reserved +
    not_found``, and ``lines = valid + skipped + unparseable`` (range lines count once in
    ``lines`` but may give many rows).
    """

    sources: list[str] = field(default_factory=list)
    input_formats: dict[str, str] = field(default_factory=dict)
    lines: int = 0
    skipped: int = 0
    unparseable: int = 0
    valid: int = 0
    located: int = 0
    reserved: int = 0
    not_found: int = 0
    distinct_ips: int = 0
    rows: int = 0
    bytes_read: int = 0
    seconds: float = 0.0
    top: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unparseable_lines: list[BadLine] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping."""
        return asdict(self)


def _ranked(counts: Counter[Any], total: int, top: int, label: Any) -> list[dict[str, Any]]:
    ranked = []
    for key, count in counts.most_common(top):
        ranked.append(
            {
                "key": key,
                "name": label(key),
                "count": count,
                "share": round(count / total, 4) if total else 0.0,
            }
        )
    return ranked


# Stand-ins for None that sort after every value, as the summary orders facets: None after
# the names (U+10FFFF is a noncharacter, in no database's names) and after every AS number.
_LAST_TEXT = "\U0010ffff"
_LAST_NUMBER = 1 << 64


def _facet_order(item: tuple[Facet, int]) -> tuple[Any, ...]:
    """A facet's place in the summary's order: by its values, None after the rest."""
    iso, country, region_code, region, city, asn, asn_org, zone = item[0]
    last = _LAST_TEXT
    return (
        last if iso is None else iso,
        last if country is None else country,
        last if region_code is None else region_code,
        last if region is None else region,
        last if city is None else city,
        _LAST_NUMBER if asn is None else asn,
        last if asn_org is None else asn_org,
        last if zone is None else zone,
    )


def top_places(facets: list[Facet | None], hits: Counter[int], top: int) -> dict[str, Any]:
    """Top countries, regions, cities, ASNs and time zones from facet hit counts."""
    countries: Counter[Any] = Counter()
    regions: Counter[Any] = Counter()
    cities: Counter[Any] = Counter()
    asns: Counter[Any] = Counter()
    zones: Counter[Any] = Counter()
    names: dict[Any, Any] = {}
    total = 0
    # Facets in the order of their values, not of their ids (the order a run met them in):
    # equal counts rank alike, and one name is kept per key, however the input was cut up.
    counted: list[tuple[Facet, int]] = []
    for facet_id, count in hits.items():
        facet = facets[facet_id]
        if facet is not None:
            counted.append((facet, count))
    located = sorted(counted, key=_facet_order)
    for (iso, country, region_code, region, city, asn, asn_org, zone), count in located:
        total += count
        if iso:
            countries[iso] += count
            names[("country", iso)] = country
        if region or region_code:
            key = f"{iso or '?'}-{region_code or region}"
            regions[key] += count
            names[("region", key)] = region
        if city:
            key = f"{city}, {region or region_code or '-'}, {iso or '?'}"
            cities[key] += count
            names[("city", key)] = city
        if asn is not None:
            asns[asn] += count
            names[("asn", asn)] = asn_org
        if zone:
            zones[zone] += count
    return {
        "countries": _ranked(countries, total, top, lambda key: names[("country", key)]),
        "regions": _ranked(regions, total, top, lambda key: names[("region", key)]),
        "cities": _ranked(cities, total, top, lambda key: names[("city", key)]),
        "asns": _ranked(asns, total, top, lambda key: names[("asn", key)]),
        "time_zones": _ranked(zones, total, top, lambda key: key),
    }
