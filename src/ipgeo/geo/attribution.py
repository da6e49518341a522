"""The credit each data vendor's licence asks for, following the databases in service."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ipgeo.geo.models import DatabaseInfo


@dataclass(frozen=True, slots=True)
class Attribution:
    """One vendor's credit: the text, the link it asks for (with the words before it), the
    licence."""

    text: str
    lead: str
    link_text: str
    url: str
    licence: str
    licence_url: str


MAXMIND = Attribution(
    text=(
        "This product includes GeoLite2 data created by MaxMind, available from "
        "https://www.maxmind.com. GeoLite2 is licensed under the Creative Commons "
        "Attribution-ShareAlike 4.0 International License (CC BY-SA 4.0)."
    ),
    lead="This product includes GeoLite2 data created by MaxMind, available from",
    link_text="https://www.maxmind.com",
    url="https://www.maxmind.com",
    licence="CC BY-SA 4.0",
    licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
)
DBIP = Attribution(
    text=(
        "IP Geolocation by DB-IP (https://db-ip.com), licensed under the Creative Commons "
        "Attribution 4.0 International License (CC BY 4.0)."
    ),
    lead="",
    link_text="IP Geolocation by DB-IP",
    url="https://db-ip.com",
    licence="CC BY 4.0",
    licence_url="https://creativecommons.org/licenses/by/4.0/",
)
IPINFO = Attribution(
    text=(
        "IP address data powered by IPinfo (https://ipinfo.io), licensed under the Creative "
        "Commons Attribution-ShareAlike 4.0 International License (CC BY-SA 4.0)."
    ),
    lead="",
    link_text="IP address data powered by IPinfo",
    url="https://ipinfo.io",
    licence="CC BY-SA 4.0",
    licence_url="https://creativecommons.org/licenses/by-sa/4.0/",
)


def attribution_of(database_type: str) -> Attribution | None:
    """The credit a database type asks for (``None``: a vendor that asks for none known)."""
    lowered = database_type.lower()
    if lowered.startswith("geolite2"):
        return MAXMIND
    if lowered.startswith("dbip"):
        return DBIP
    if "ipinfo" in lowered:
        return IPINFO
    return None


def attributions(databases: Iterable[DatabaseInfo]) -> tuple[Attribution, ...]:
    """The credits the databases in service ask for, each once, in database order."""
    found: list[Attribution] = []
    for info in databases:
        credit = attribution_of(info.database_type)
        if credit is not None and credit not in found:
            found.append(credit)
    return tuple(found)


def attribution_text(databases: Iterable[DatabaseInfo]) -> str | None:
    """The credits as one text, for ``/api/v1/meta`` (``None`` when none is asked for)."""
    return " ".join(credit.text for credit in attributions(databases)) or None
