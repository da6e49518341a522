"""The OpenAPI schema of each field of a lookup answer."""

from __future__ import annotations

from typing import Any

_STRING = {"type": "string", "nullable": True}
FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "ip": {"type": "string", "description": "The address looked up.", "example": "8.8.8.8"},
    "query": {"type": "string", "description": "The query as given."},
    "version": {"type": "integer", "enum": [4, 6]},
    "network": {**_STRING, "description": "The database network containing the address."},
    "hostname": {**_STRING, "description": "The domain queried, or the PTR name if enabled."},
    "continent": _STRING,
    "continent_code": _STRING,
    "country": _STRING,
    "country_iso": {**_STRING, "description": "ISO 3166-1 alpha-2 code.", "example": "US"},
    "country_eu": {"type": "boolean", "nullable": True},
    "registered_country": {
        **_STRING,
        "description": "The country the network is registered to (may differ from `country`).",
    },
    "registered_country_iso": {**_STRING, "description": "ISO code of `registered_country`."},
    "region": _STRING,
    "region_code": _STRING,
    "city": _STRING,
    "postal_code": _STRING,
    "latitude": {"type": "number", "nullable": True},
    "longitude": {"type": "number", "nullable": True},
    "accuracy_radius_km": {"type": "integer", "nullable": True},
    "time_zone": {**_STRING, "description": "IANA time zone name."},
    "time_zone_source": {"type": "string", "nullable": True, "enum": ["database", "polygon", None]},
    "utc_offset": {**_STRING, "example": "+01:00"},
    "local_time": {**_STRING, "description": "Current local time, ISO 8601."},
    "asn": {"type": "integer", "nullable": True},
    "asn_org": _STRING,
    "addresses": {
        "type": "array",
        "nullable": True,
        "items": {"type": "string"},
        "description": "Every resolved address (domain queries only).",
    },
}
