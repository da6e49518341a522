"""The run summary: counts, top places, and the first unparseable lines."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable
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


def _ranked(
    counts: Counter[Any], total: int, top: int, label: Callable[[Any], Any]
) -> list[dict[str, Any]]:
    """The ``top`` keys by count, equal counts by key (however the input was cut up)."""
    ranked = heapq.nsmallest(top, counts.items(), key=lambda item: (-item[1], item[0]))
    return [
        {
            "key": key,
            "name": label(key),
            "count": count,
            "share": round(count / total, 4) if total else 0.0,
        }
        for key, count in ranked
    ]


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
    """Top countries, regions, cities, ASNs and time zones from facet hit counts.

    A key whose facets give it different names is named by the facet last in the order of
    facet values (``_facet_order``), not by the order a run met them in: one name per key,
    however the input was cut up.
    """
    located = [(facets[facet_id], count) for facet_id, count in hits.items()]
    located = [item for item in located if item[0] is not None]
    countries, regions, cities, asns, zones = counts = [Counter[Any]() for _ in range(5)]
    names: list[dict[Any, Any]] = [{}, {}, {}, {}]  # by kind (as in ``counts``), by key
    total = 0
    mixed = False  # some key was given more than one name
    for facet, count in located:  # (one loop: half the time of a run over random IPs)
        iso, country, region_code, region, city, asn, asn_org, zone = facet  # type: ignore[misc]
        total += count
        if iso:
            countries[iso] += count
            mixed |= names[0].setdefault(iso, country) != country
        if region or region_code:
            key = _region_key(iso, region_code, region)
            regions[key] += count
            mixed |= names[1].setdefault(key, region) != region
        if city:
            key = f"{city}, {region or region_code or '-'}, {iso or '?'}"
            cities[key] += count
            names[2][key] = city  # the city is in the key
        if asn is not None:
            asns[asn] += count
            mixed |= names[3].setdefault(asn, asn_org) != asn_org
        if zone:
            zones[zone] += count
    if mixed:
        for facet, _ in sorted(located, key=_facet_order):  # type: ignore[arg-type]
            iso, country, region_code, region, _, asn, asn_org, _ = facet  # type: ignore[misc]
            if iso:
                names[0][iso] = country
            if region or region_code:
                names[1][_region_key(iso, region_code, region)] = region
            if asn is not None:
                names[3][asn] = asn_org
    labels: list[Callable[[Any], Any]] = [*(by_key.__getitem__ for by_key in names), str]
    return {
        kind: _ranked(counted, total, top, label)
        for kind, counted, label in zip(_KINDS, counts, labels, strict=True)
    }


def _region_key(iso: str | None, region_code: str | None, region: str | None) -> str:
    """The summary's key of a region: country and region code (or name)."""
    return f"{iso or '?'}-{region_code or region}"


_KINDS = ("countries", "regions", "cities", "asns", "time_zones")
