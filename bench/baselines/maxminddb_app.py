"""B4: Flask + ``maxminddb`` dicts + orjson (no ``geoip2`` objects), served like B3.

The issue's reference for a Python service that skips the model objects and the slow JSON
encoder but keeps Flask: what the lookup costs once the obvious waste is gone.
"""

from __future__ import annotations

from typing import Any

import maxminddb
import orjson
from flask import Flask, Response

from bench.baselines import city_db_path

app = Flask(__name__)
reader = maxminddb.open_database(str(city_db_path()), maxminddb.MODE_MMAP_EXT)


def _en(node: Any) -> Any:
    return node.get("names", {}).get("en") if node else None


@app.route("/api/v1/lookup/<ip>")
def lookup(ip: str) -> Response:
    """Look ``ip`` up and build the flat answer straight from the record dict."""
    try:
        found: tuple[Any, int] = reader.get_with_prefix_len(ip)  # records are plain dicts
    except ValueError:
        return Response(b'{"error":"not a valid IP address"}', 400, mimetype="application/json")
    record, prefix = found
    if record is None:
        return Response(b'{"error":"not in the database"}', 404, mimetype="application/json")
    country = record.get("country") or {}
    location = record.get("location") or {}
    subdivisions = record.get("subdivisions") or [None]
    answer = {
        "ip": ip,
        "network_prefix": prefix,
        "continent": _en(record.get("continent")),
        "country": _en(country),
        "country_iso": country.get("iso_code"),
        "region": _en(subdivisions[-1]),
        "city": _en(record.get("city")),
        "postal_code": (record.get("postal") or {}).get("code"),
        "latitude": location.get("latitude"),
        "longitude": location.get("longitude"),
        "accuracy_radius_km": location.get("accuracy_radius"),
        "time_zone": location.get("time_zone"),
    }
    return Response(orjson.dumps(answer), mimetype="application/json")
